//! The one record reader behind every table `kiln train --model --data`, `kiln eval` and
//! `kiln predict` read, numeric and text alike.
//!
//! The csv crate splits fields and undoes quoting; this module holds it to the lines of the file.
//! Every non-blank physical line after the header ends up in exactly one [`Row`] or one
//! [`BadRow`], each naming its lines, so a caller can skip and count, or refuse naming the line,
//! but never lose a line without saying so. What it catches that a plain CSV parse does not:
//! - a quote that opens a field and is never closed, or closed lines later (a stray `"`), which
//!   makes a parser swallow the rows that follow into one field. A record that spans lines is
//!   taken as one row only where the file's other rows span lines too and nothing suggests
//!   swallowed rows (every line inside it that has no quote of its own is not a row of the
//!   header's width). Otherwise its first line is bad, and each line after it is read on its own:
//!   a row where it is one, bad where it holds a quote or another width;
//! - text after a closing quote (`"1.5"3`, which a lenient parser reads as `1.53`);
//! - rows of another width than the header, and lines that are not UTF-8;
//! - headers with an empty or a repeated column name (refused: the columns could not be told
//!   apart by name).
//!
//! The delimiter is the extension's (`.tsv`/`.tab`: tab, else comma) unless the header holds none
//! of it and holds one of tab, semicolon or `|`: then that one, and [`Table::delimiter_note`] says
//! so.

use std::collections::BTreeMap;
use std::path::Path;

use super::clip;

/// The physical lines a record covers, counted from 1 (the header is line 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lines {
    /// Its first line.
    pub first: u64,
    /// Its last line (the same as `first` for most rows).
    pub last: u64,
}

impl Lines {
    fn one(line: u64) -> Lines {
        Lines {
            first: line,
            last: line,
        }
    }
}

impl std::fmt::Display for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "line {}", self.first)
        } else {
            write!(f, "lines {}-{}", self.first, self.last)
        }
    }
}

/// A record with as many fields as the header.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Where it is in the file.
    pub lines: Lines,
    /// Its fields, unquoted, in the header's order.
    pub cells: Vec<String>,
}

/// Lines that are not a usable record, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct BadRow {
    /// Where.
    pub lines: Lines,
    /// What is wrong, for a person.
    pub why: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.lines, self.why)
    }
}

/// A delimited file read record by record.
#[derive(Clone, Debug)]
pub struct Table {
    /// Column names, trimmed, unique and non-empty.
    pub header: Vec<String>,
    /// The field separator.
    pub delimiter: u8,
    /// Set when the delimiter was read off the header rather than the extension.
    pub delimiter_note: Option<String>,
    /// The records, in file order.
    pub rows: Vec<Row>,
    /// The lines that are no record, in file order.
    pub bad: Vec<BadRow>,
}

impl Table {
    /// The index of column `name`, or an error that lists the columns.
    pub fn column(&self, name: &str) -> Result<usize, String> {
        self.header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "no column `{}`; the columns are {}",
                clip(name),
                clip(&self.header.join(", "))
            )
        })
    }
}

/// A cell read as a number.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// Blank.
    Empty,
    /// A finite f32.
    Number(f32),
    /// A number beyond f32's range (`1e300`).
    OutOfRange,
    /// `nan`, `inf`, `-infinity`.
    NotFinite,
    /// Anything else.
    Text,
}

impl Cell {
    /// Classifies `text` (surrounding blanks ignored).
    pub fn of(text: &str) -> Cell {
        let t = text.trim();
        if t.is_empty() {
            return Cell::Empty;
        }
        match t.parse::<f32>() {
            Ok(v) if v.is_finite() => Cell::Number(v),
            Ok(v) if v.is_infinite() && t.bytes().any(|b| b.is_ascii_digit()) => Cell::OutOfRange,
            Ok(_) => Cell::NotFinite,
            Err(_) => Cell::Text,
        }
    }

    /// Whether it reads as a number, usable or not (so the column is numeric).
    pub fn is_numeric(self) -> bool {
        !matches!(self, Cell::Text)
    }

    /// Why `text`, in column `column`, is not a usable number; None when it is one.
    pub fn problem(text: &str, column: &str) -> Option<String> {
        let (column, text) = (clip(column), clip(text.trim()));
        match Cell::of(&text) {
            Cell::Number(_) => None,
            Cell::Empty => Some(format!("column `{column}` is empty")),
            Cell::OutOfRange => Some(format!(
                "column `{column}` is {text}, beyond the range of f32 (about ±3.4e38); scale the column down"
            )),
            Cell::NotFinite => Some(format!(
                "column `{column}` is `{text}`, not a finite number"
            )),
            Cell::Text => Some(format!("column `{column}` is `{text}`, not a number")),
        }
    }
}

/// The delimiter an extension implies.
fn default_delimiter(path: &Path) -> u8 {
    let tsv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv") || e.eq_ignore_ascii_case("tab"));
    if tsv {
        b'\t'
    } else {
        b','
    }
}

fn delimiter_name(d: u8) -> &'static str {
    match d {
        b'\t' => "tab",
        b',' => "comma",
        b';' => "semicolon",
        _ => "`|`",
    }
}

/// The delimiter of a file whose extension implies `default` and whose header line is `header`.
fn sniff(header: &[u8], default: u8) -> (u8, Option<String>) {
    let count = |d: u8| header.iter().filter(|&&b| b == d).count();
    if count(default) > 0 {
        return (default, None);
    }
    let found = [b'\t', b';', b'|', b',']
        .into_iter()
        .filter(|&d| d != default)
        .max_by_key(|&d| count(d))
        .filter(|&d| count(d) > 0);
    match found {
        Some(d) => (
            d,
            Some(format!(
                "{}-separated (its header has no {} but {} {}s)",
                delimiter_name(d),
                delimiter_name(default),
                count(d),
                delimiter_name(d)
            )),
        ),
        None => (default, None),
    }
}

/// Where each physical line starts: after `\n`, `\r\n` or a lone `\r` (the line ends the csv
/// crate also takes).
fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => starts.push(i + 1),
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                starts.push(i + 2);
                i += 1;
            }
            b'\r' => starts.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    starts
}

/// The lines of a byte slice, and their numbers.
struct LineIndex<'a> {
    bytes: &'a [u8],
    starts: Vec<usize>,
}

impl LineIndex<'_> {
    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> u64 {
        self.starts.partition_point(|&s| s <= offset) as u64
    }

    /// Line `line`'s text without its line end.
    fn text(&self, line: u64) -> &[u8] {
        let i = line as usize - 1;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.bytes.len());
        trim_line_end(&self.bytes[self.starts[i]..end])
    }
}

fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

/// What is wrong with the quoting of one raw record, if anything: a quote opens a field only at
/// its start, a doubled quote inside is a quote, and a closing quote ends the field.
fn quoting_problem(raw: &[u8], delimiter: u8) -> Option<String> {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::FieldStart;
    let mut field = 1;
    for &b in raw {
        s = match s {
            S::FieldStart if b == b'"' => S::Quoted,
            S::FieldStart | S::Unquoted if b == delimiter => {
                field += 1;
                S::FieldStart
            }
            S::FieldStart | S::Unquoted => S::Unquoted,
            S::Quoted if b == b'"' => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::QuoteInQuoted if b == b'"' => S::Quoted,
            S::QuoteInQuoted if b == delimiter => {
                field += 1;
                S::FieldStart
            }
            S::QuoteInQuoted => {
                return Some(format!(
                    "text after the closing quote of field {field} (a stray quote?)"
                ))
            }
        };
    }
    (s == S::Quoted).then(|| {
        format!("field {field} opens a quote that is never closed (a stray or unclosed quote?)")
    })
}

fn utf8_cells(record: &csv::ByteRecord) -> Option<Vec<String>> {
    record
        .iter()
        .map(|f| std::str::from_utf8(f).ok().map(str::to_string))
        .collect()
}

/// A record as the csv crate read it, with its place and its raw bytes' verdict.
struct Raw {
    lines: Lines,
    cells: Option<Vec<String>>,
    quoting: Option<String>,
}

impl Raw {
    fn clean(&self, width: usize) -> bool {
        self.quoting.is_none() && self.cells.as_ref().is_some_and(|c| c.len() == width)
    }
}

/// Reads `path` (see the module doc). Errors are about the whole file: unreadable, no header, a
/// header with an empty or repeated name.
pub fn read(path: &Path) -> crate::Result<Table> {
    let bytes = std::fs::read(path).map_err(|source| crate::Error::Io {
        path: path.to_path_buf(),
        source,
        hint: "--data names a CSV file (TSV by extension) with a header row",
    })?;
    parse(&bytes, default_delimiter(path)).map_err(|message| crate::Error::bad(path, message))
}

/// Reads a table from `bytes`, `default_delimiter` unless the header says otherwise.
pub fn parse(bytes: &[u8], default_delimiter: u8) -> Result<Table, String> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let index = LineIndex {
        bytes,
        starts: line_starts(bytes),
    };
    let (delimiter, delimiter_note) = sniff(index.text(1), default_delimiter);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut raws = vec![];
    let mut end = 0usize;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| format!("cannot read it: {e}"))?;
        if !more {
            break;
        }
        // The csv crate skips blank lines before a record; its start is the first byte that is
        // not a line end.
        let start = end
            + bytes[end..]
                .iter()
                .position(|&b| b != b'\n' && b != b'\r')
                .unwrap_or(0);
        end = reader.position().byte() as usize;
        let raw = trim_line_end(&bytes[start..end]);
        let last = start + raw.len().max(1) - 1;
        raws.push(Raw {
            lines: Lines {
                first: index.line_of(start),
                last: index.line_of(last),
            },
            cells: utf8_cells(&record),
            quoting: quoting_problem(raw, delimiter),
        });
    }
    let mut raws = raws.into_iter();
    let header = header_of(raws.next())?;
    let width = header.len();
    let raws: Vec<Raw> = raws.collect();
    let spanning = raws
        .iter()
        .filter(|r| r.lines.first != r.lines.last && r.clean(width))
        .count();
    let mut table = Table {
        header,
        delimiter,
        delimiter_note,
        rows: vec![],
        bad: vec![],
    };
    for raw in raws {
        let one_row = raw.lines.first == raw.lines.last
            || (spanning >= 2 && raw.clean(width) && !swallows_rows(&raw, &index, &table));
        if one_row {
            table.push(raw, width);
        } else {
            table.split_span(raw.lines, &index);
        }
    }
    Ok(table)
}

fn header_of(raw: Option<Raw>) -> Result<Vec<String>, String> {
    let Some(raw) = raw else {
        return Err("it is empty; the first line must name the columns (a header row)".into());
    };
    let Some(cells) = raw.cells else {
        return Err("its header is not UTF-8 text".into());
    };
    if let Some(q) = raw.quoting {
        return Err(format!("its header: {q}"));
    }
    let header: Vec<String> = cells.iter().map(|h| h.trim().to_string()).collect();
    if header.iter().all(String::is_empty) {
        return Err("the first line must name the columns (a header row)".into());
    }
    if let Some(i) = header.iter().position(String::is_empty) {
        return Err(format!(
            "column {} of the header has no name; name every column",
            i + 1
        ));
    }
    let mut seen = BTreeMap::<&str, usize>::new();
    for (i, h) in header.iter().enumerate() {
        if let Some(first) = seen.insert(h, i + 1) {
            return Err(format!(
                "the header names column `{}` twice (columns {first} and {}); kiln reads columns by name, so give each its own",
                clip(h),
                i + 1
            ));
        }
    }
    Ok(header)
}

/// The fields of a line without quotes, split at the delimiter; None where it has a quote or
/// is not UTF-8.
fn plain_fields(line: &[u8], delimiter: u8) -> Option<Vec<String>> {
    if line.contains(&b'"') {
        return None;
    }
    let text = std::str::from_utf8(line).ok()?;
    Some(text.split(delimiter as char).map(str::to_string).collect())
}

/// Whether a line after the first of a spanning record is, on its own, a row of the header's
/// width with no quote: the sign of rows swallowed by a stray quote.
fn swallows_rows(raw: &Raw, index: &LineIndex, table: &Table) -> bool {
    (raw.lines.first + 1..=raw.lines.last).any(|l| {
        plain_fields(index.text(l), table.delimiter).is_some_and(|f| f.len() == table.header.len())
    })
}

impl Table {
    fn push(&mut self, raw: Raw, width: usize) {
        let why = match (&raw.cells, raw.quoting) {
            (None, _) => Some("not UTF-8 text".to_string()),
            (_, Some(q)) => Some(q),
            (Some(c), None) if c.len() != width => {
                Some(format!("{} fields, the header has {width}", c.len()))
            }
            _ => None,
        };
        match why {
            Some(why) => self.bad.push(BadRow {
                lines: raw.lines,
                why,
            }),
            None => self.rows.push(Row {
                lines: raw.lines,
                cells: raw.cells.expect("checked"),
            }),
        }
    }

    /// A record that spans lines and is not taken as one row: its first line opened the quote;
    /// every other line is read on its own.
    fn split_span(&mut self, lines: Lines, index: &LineIndex) {
        let (first, last) = (lines.first, lines.last);
        let width = self.header.len();
        let ends = if index.text(last).contains(&b'"') {
            format!("line {last}")
        } else {
            "the end of the file".to_string()
        };
        self.bad.push(BadRow {
            lines: Lines::one(first),
            why: format!(
                "a quote opens a field that runs on to {ends}, over {} more lines (a stray or unclosed quote?); those lines are read as rows of their own",
                last - first
            ),
        });
        for line in first + 1..=last {
            let text = index.text(line);
            if text.is_empty() {
                continue;
            }
            let lines = Lines::one(line);
            match plain_fields(text, self.delimiter) {
                Some(cells) if cells.len() == width => self.rows.push(Row { lines, cells }),
                Some(cells) => self.bad.push(BadRow {
                    lines,
                    why: format!("{} fields, the header has {width}", cells.len()),
                }),
                None => self.bad.push(BadRow {
                    lines,
                    why: format!(
                        "holds the quote that line {first} opened, or a quote of its own; check the quotes on lines {first}-{line}"
                    ),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        parse(text.as_bytes(), b',').unwrap()
    }

    fn lines(t: &Table) -> (Vec<u64>, Vec<u64>) {
        (
            t.rows.iter().map(|r| r.lines.first).collect(),
            t.bad.iter().map(|r| r.lines.first).collect(),
        )
    }

    #[test]
    fn a_stray_quote_loses_only_its_own_line() {
        let mut text = String::from("a,b,label\n");
        for i in 2..=200 {
            if i == 21 {
                text.push_str("\"1,2,x\n");
            } else {
                text.push_str(&format!("{i},{i},y\n"));
            }
        }
        let t = table(&text);
        assert_eq!(t.rows.len(), 198);
        assert_eq!(t.bad.len(), 1, "{:?}", t.bad);
        assert_eq!(t.bad[0].lines, Lines::one(21));
        assert!(t.bad[0].why.contains("the end of the file"), "{}", t.bad[0]);
        assert_eq!(t.rows[19].lines.first, 22);
        assert_eq!(t.rows[19].cells, ["22", "22", "y"]);
    }

    #[test]
    fn balanced_stray_quotes_do_not_merge_lines() {
        // Line 3 opens a quote in the label, line 12 closes it: a parser reads one record of
        // three fields whose label holds ten lines.
        let mut text = String::from("a,b,label\n1,1,p\n2,2,\"q\n");
        for i in 4..12 {
            text.push_str(&format!("{i},{i},p\n"));
        }
        text.push_str("12,12,q\"\n13,13,p\n");
        let t = table(&text);
        let (rows, bad) = lines(&t);
        assert_eq!(bad, [3, 12], "{:?}", t.bad);
        assert_eq!(rows, [2, 4, 5, 6, 7, 8, 9, 10, 11, 13]);
    }

    #[test]
    fn quoted_fields_that_span_lines_are_kept_where_the_file_has_several() {
        let text = "id,text,label\n1,\"two\nlines\",a\n2,plain,b\n3,\"and\n\nthree\",a\n";
        let t = table(text);
        assert!(t.bad.is_empty(), "{:?}", t.bad);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].cells[1], "two\nlines");
        assert_eq!(t.rows[2].lines, Lines { first: 5, last: 7 });
        // The only such record in a file is taken for a stray quote, and named.
        let t = table("id,text,label\n1,\"two\nlines\",a\n2,plain,b\n");
        let (rows, bad) = lines(&t);
        assert_eq!((rows, bad), (vec![4], vec![2, 3]));
    }

    #[test]
    fn text_after_a_closing_quote_and_bad_widths_are_named() {
        let t = table("a,b\n\"1.5\"3,2\n1,2,3\n\n1,2\r\n4,5");
        assert_eq!(t.bad.len(), 2);
        assert!(
            t.bad[0].why.contains("after the closing quote"),
            "{}",
            t.bad[0]
        );
        assert_eq!(t.bad[1].to_string(), "line 3: 3 fields, the header has 2");
        let (rows, _) = lines(&t);
        assert_eq!(rows, [5, 6]);
        assert_eq!(t.rows[0].cells, ["1", "2"]);
    }

    #[test]
    fn headers_must_name_each_column_once() {
        let e = parse(b"f1,f1,f3,label\n1,2,3,a\n", b',').unwrap_err();
        assert!(e.contains("`f1` twice (columns 1 and 2)"), "{e}");
        assert!(parse(b"a,,c\n", b',').unwrap_err().contains("column 2"));
        assert!(parse(b"", b',').unwrap_err().contains("empty"));
    }

    #[test]
    fn the_delimiter_is_read_off_the_header_when_the_extension_is_wrong() {
        let t = table("a;b;label\n1;2;x\n");
        assert_eq!(t.delimiter, b';');
        assert!(t.delimiter_note.as_ref().unwrap().contains("semicolon"));
        assert_eq!(t.rows[0].cells, ["1", "2", "x"]);
        assert_eq!(table("a,b\n1,2\n").delimiter_note, None);
    }

    #[test]
    fn cells_tell_numbers_too_large_for_f32_from_text() {
        assert_eq!(Cell::of(" 1.5 "), Cell::Number(1.5));
        assert_eq!(Cell::of("1e300"), Cell::OutOfRange);
        assert_eq!(Cell::of("-1e39"), Cell::OutOfRange);
        assert_eq!(Cell::of("nan"), Cell::NotFinite);
        assert_eq!(Cell::of("-inf"), Cell::NotFinite);
        assert_eq!(Cell::of("cat"), Cell::Text);
        assert_eq!(Cell::of(""), Cell::Empty);
        assert!(Cell::problem("1e300", "x")
            .unwrap()
            .contains("range of f32"));
    }

    /// Every non-blank physical line after the header is in exactly one row or one bad row,
    /// and every row has the header's width: whatever the bytes.
    fn check_coverage(bytes: &[u8]) {
        let Ok(t) = parse(bytes, b',') else {
            return;
        };
        let body = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        let index = LineIndex {
            bytes: body,
            starts: line_starts(body),
        };
        let mut covered = vec![0u32; index.starts.len() + 2];
        let spans = t
            .rows
            .iter()
            .map(|r| r.lines)
            .chain(t.bad.iter().map(|b| b.lines));
        for lines in spans {
            assert!(lines.first >= 2 && lines.first <= lines.last, "{lines:?}");
            for l in lines.first..=lines.last {
                covered[l as usize] += 1;
            }
        }
        // The generated header is line 1.
        for line in 2..=index.starts.len() as u64 {
            let blank = index.text(line).is_empty();
            let c = covered[line as usize];
            assert!(c <= 1, "line {line} covered {c} times");
            assert!(
                blank || c == 1,
                "line {line} lost: {:?}",
                String::from_utf8_lossy(index.text(line))
            );
        }
        assert!(t.rows.iter().all(|r| r.cells.len() == t.header.len()));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        #[test]
        fn every_line_is_one_row_or_one_named_bad_row(
            body in proptest::collection::vec(
                proptest::sample::select(vec![b'a', b'1', b',', b'"', b'\n', b'\r', b' ', b';', b'\t', 0xff]),
                0..200,
            )
        ) {
            let mut bytes = b"a,b,c\n".to_vec();
            bytes.extend(body);
            check_coverage(&bytes);
        }
    }
}

//! Checkpoints and saved models in safetensors. Parameters are stored by name (`param.<name>`),
//! optimizer state as flat tensors (`optim.m`, `optim.v`); epoch, step, seed, configs and history
//! go in the metadata. Files are written atomically (temporary file in the same folder, fsync,
//! rename), so a crash leaves either the previous file or the new one, never a torn one.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Result};

/// A parameter's name, shape and values on the host.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The format tag written into every file's metadata.
pub const FORMAT: &str = "kiln-1";

/// What a checkpoint holds, on the host.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Parameters by name.
    pub params: Vec<NamedTensor>,
    /// Optimizer state: step count, first and second moments (packed like the parameters).
    pub optimizer: Option<(u64, Vec<f32>, Vec<f32>)>,
    /// Free-form metadata: epoch, seed, model and training configs (JSON), history (JSON).
    pub metadata: HashMap<String, String>,
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn floats_of(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// What `path` is when it exists and is not a regular file (symbolic links are not followed).
pub fn special_file_kind(path: &Path) -> Option<&'static str> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let t = meta.file_type();
    if t.is_file() {
        return None;
    }
    Some(if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        special_kind(&t)
    })
}

#[cfg(unix)]
fn special_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &std::fs::FileType) -> &'static str {
    "not a regular file"
}

/// Refuses an output path that exists and is not a regular file (`/dev/null`, a folder, a link,
/// a pipe): an atomic write renames over its target, which would replace it with a file.
pub fn check_writable(path: &Path) -> Result<()> {
    match special_file_kind(path) {
        Some(kind) => Err(Error::NotAFile {
            path: path.into(),
            kind,
        }),
        None => Ok(()),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (created with the
/// process's umask, as any file a program creates), fsync, rename. A path that exists and is not
/// a regular file is refused ([`check_writable`]); errors name the path that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file, tmp| {
        file.write_all(bytes).map_err(|e| Error::Write {
            path: path.into(),
            doing: format!("writing {}", tmp.display()),
            source: e,
        })
    })
}

/// [`write_atomic`] for a writer of its own: `fill` gets the open temporary file and its path
/// (a library that opens files by name, such as an image encoder, writes to the path), then the
/// file is synced and renamed over `path`. Dropped on any error, so `path` keeps what it held.
pub fn write_atomic_with<E: From<Error>>(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File, &Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    check_writable(path)?;
    let fail = |doing: String| {
        move |source| Error::Write {
            path: path.into(),
            doing,
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail(format!("creating the folder {}", dir.display())))?;
    let mut builder = tempfile::Builder::new();
    // rw for everyone less the umask (the kernel applies it), as `File::create` gives; tempfile's
    // own default is owner-only. The extension is kept for writers that choose a format by it.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let suffix = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut tmp = builder
        .prefix(".tmp")
        .suffix(&suffix)
        .tempfile_in(dir)
        .map_err(fail(format!("creating a file in {}", dir.display())))?;
    let tmp_path = tmp.path().to_path_buf();
    fill(tmp.as_file_mut(), &tmp_path)?;
    std::fs::File::open(&tmp_path)
        .and_then(|f| f.sync_all())
        .map_err(fail(format!("syncing {}", tmp_path.display())))?;
    tmp.persist(path)
        .map_err(|e| fail(format!("renaming {} into place", tmp_path.display()))(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // make the rename itself durable where the platform allows
    }
    Ok(())
}

impl Checkpoint {
    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .params
            .iter()
            .map(|(name, shape, v)| (format!("param.{name}"), shape.clone(), bytes_of(v)))
            .collect();
        let mut metadata = self.metadata.clone();
        metadata.insert("format".into(), FORMAT.into());
        if let Some((step, m, v)) = &self.optimizer {
            buffers.push(("optim.m".into(), vec![m.len()], bytes_of(m)));
            buffers.push(("optim.v".into(), vec![v.len()], bytes_of(v)));
            metadata.insert("optim.step".into(), step.to_string());
        }
        let views = buffers
            .iter()
            .map(|(name, shape, b)| {
                TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.clone(), v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Checkpoint {
                path: path.into(),
                message: e.to_string(),
            })?;
        let bytes =
            safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Checkpoint {
                path: path.into(),
                message: e.to_string(),
            })?;
        write_atomic(path, &bytes)
    }

    /// Reads a file, refusing one that is not a kiln checkpoint or is torn.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bad = |message: String| Error::Checkpoint {
            path: path.into(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!(
                "not a kiln file (format {:?}, expected {FORMAT})",
                metadata.get("format")
            )));
        }
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut params = vec![];
        let (mut m, mut v) = (None, None);
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let values = floats_of(view.data());
            match name.as_str() {
                "optim.m" => m = Some(values),
                "optim.v" => v = Some(values),
                _ => match name.strip_prefix("param.") {
                    Some(p) => params.push((p.to_string(), view.shape().to_vec(), values)),
                    None => return Err(bad(format!("unexpected tensor {name}"))),
                },
            }
        }
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let optimizer = match (m, v, metadata.get("optim.step")) {
            (Some(m), Some(v), Some(step)) => Some((
                step.parse()
                    .map_err(|_| bad(format!("bad optim.step {step}")))?,
                m,
                v,
            )),
            (None, None, None) => None,
            _ => return Err(bad("incomplete optimizer state".into())),
        };
        Ok(Checkpoint {
            params,
            optimizer,
            metadata,
        })
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }
}

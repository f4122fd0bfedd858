//! Embedding gather and its deterministic backward; one-hot rows from ids.

use crate::device::Backend;
use crate::gpu::Launch;
use crate::ops::{groups, shape_str};
use crate::params::EmbeddingParams;
use crate::shaders::ShaderFamily;
use crate::{reference, DType, Device, Error, Result, Tensor};

impl Device {
    /// Checks ids (u32, every value below the vocabulary) and derives the params.
    fn embedding_params(
        &self,
        op: &'static str,
        table_shape: &[usize],
        ids: &Tensor,
    ) -> Result<EmbeddingParams> {
        self.check_device(op, ids)?;
        if ids.dtype() != DType::U32 {
            return Err(Error::DType {
                op,
                arg: "ids",
                expected: DType::U32,
                got: ids.dtype(),
            });
        }
        let &[vocab, dim] = table_shape else {
            return Err(Error::shape(
                op,
                "a table of shape [V, E]",
                shape_str(table_shape),
            ));
        };
        // A host-known upper bound below the vocabulary proves every id valid without a readback;
        // otherwise (no bound, or a loose one such as argmax's) the ids themselves are checked.
        if ids.max_value.is_none_or(|bound| bound as usize >= vocab) {
            let host = self.to_u32(ids)?;
            if let Some(position) = host.iter().position(|&v| v as usize >= vocab) {
                return Err(Error::IndexOutOfRange {
                    op,
                    value: host[position],
                    limit: vocab,
                    position,
                });
            }
        }
        Ok(EmbeddingParams {
            n: ids.len() as u32,
            dim: dim as u32,
            vocab: vocab as u32,
            _pad: 0,
        })
    }

    /// out (ids.shape..., E) = table (V, E) rows picked by ids.
    pub fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let op = "embedding";
        self.check(op, table)?;
        let p = self.embedding_params(op, table.shape(), ids)?;
        let mut shape = ids.shape().to_vec();
        shape.push(p.dim as usize);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("embedding_forward");
                let mut out = self.host_zeros(ids.len() * p.dim as usize);
                reference::embedding_forward(
                    &p,
                    &self.host_read(table),
                    self.host_read(ids).u32(),
                    &mut out,
                );
                Ok(self.host_tensor(out, &shape))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(op, DType::F32, &shape)?;
                g.launch(Launch {
                    family: ShaderFamily::Embedding,
                    entry: "embedding_forward",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(1, table), (2, ids), (3, &out)],
                    workgroups: groups(out.len(), 256),
                })?;
                Ok(out)
            }
        }
    }

    /// out (ids.shape..., classes): one-hot rows, 1 at each id's column (class-index targets as
    /// the distributions the categorical losses take). Ids must be below `classes`.
    pub fn one_hot(&self, ids: &Tensor, classes: usize) -> Result<Tensor> {
        let op = "one_hot";
        let p = self.embedding_params(op, &[classes, classes], ids)?;
        let mut shape = ids.shape().to_vec();
        shape.push(classes);
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("one_hot");
                let mut out = self.host_zeros(ids.len() * classes);
                reference::one_hot(&p, &self.host_u32(ids), &mut out);
                Ok(self.host_tensor(out, &shape))
            }
            Backend::Gpu(g) => {
                let out = self.alloc(op, DType::F32, &shape)?;
                g.launch(Launch {
                    family: ShaderFamily::Embedding,
                    entry: "one_hot",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(2, ids), (3, &out)],
                    workgroups: groups(out.len(), 256),
                })?;
                Ok(out)
            }
        }
    }

    /// dtable (V, E) += the rows of dout (ids.shape..., E) summed by id. Deterministic: each row's
    /// sum runs in id-position order, with no atomics (two dispatches: links, then sums).
    pub fn embedding_backward(&self, dtable: &Tensor, dout: &Tensor, ids: &Tensor) -> Result<()> {
        let op = "embedding_backward";
        self.check(op, dtable)?;
        self.check(op, dout)?;
        let p = self.embedding_params(op, dtable.shape(), ids)?;
        if dout.len() != ids.len() * p.dim as usize {
            let mut want = ids.shape().to_vec();
            want.push(p.dim as usize);
            return Err(Error::shape(
                op,
                format!("dout of shape {want:?}"),
                shape_str(dout.shape()),
            ));
        }
        match self.backend() {
            Backend::Cpu => {
                let _span = self.span("embedding_backward");
                let run = host_kernel!(self, embedding_backward);
                let (dout, ids) = (self.host_f32(dout), self.host_u32(ids));
                run(&p, &dout, &ids, &mut self.host_write(dtable));
                self.count_dispatch();
                Ok(())
            }
            Backend::Gpu(g) => {
                let links = self.alloc(op, DType::U32, &[2 * ids.len()])?;
                g.launch(Launch {
                    family: ShaderFamily::Embedding,
                    entry: "embedding_links",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(2, ids), (6, &links)],
                    workgroups: groups(ids.len(), 256),
                })?;
                g.launch(Launch {
                    family: ShaderFamily::Embedding,
                    entry: "embedding_backward",
                    overrides: &[],
                    params: bytemuck::bytes_of(&p),
                    bindings: &[(2, ids), (4, dout), (5, dtable), (7, &links)],
                    workgroups: groups(dout.len(), 256),
                })
            }
        }
    }
}

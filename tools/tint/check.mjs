// Builds kiln's compute pipelines with Tint, Dawn's WGSL compiler (Chrome's), on Dawn's null
// backend: no GPU is needed, and the adapter has WebGPU's default limits (8 storage buffers per
// stage, 16 KiB of workgroup memory, 256 invocations), so a kernel that needs more fails here.
//
//   node tools/tint/check.mjs pipelines.json
//
// pipelines.json: {"sources": {"matmul.wgsl": "<common.wgsl + matmul.wgsl>", ...},
//                  "pipelines": [{"file": "matmul.wgsl", "entry": "matmul_tiled",
//                                 "constants": {"TRANS_A": 0, ...}}, ...]}
// Prints one JSON object: the adapter's limits that matter and, per pipeline, Tint's errors and
// warnings (shader-module messages and pipeline validation errors). tests/shader_backends.rs
// writes the file from the pipeline keys the launchers compiled, runs this, and fails on any error.
import { readFileSync } from 'node:fs';
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const gpu = create(['backend=null']);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.log(JSON.stringify({ error: 'Dawn offers no null adapter' }));
  process.exit(2);
}
// No required limits: the device gets WebGPU's defaults.
const device = await adapter.requestDevice();
const limits = {};
for (const name of ['maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxStorageBufferBindingSize']) {
  limits[name] = device.limits[name];
}

const modules = new Map();
async function module(file) {
  if (!modules.has(file)) {
    const m = device.createShaderModule({ code: input.sources[file] });
    const info = await m.getCompilationInfo();
    const messages = info.messages.map((msg) => ({
      type: msg.type,
      text: `${file}:${msg.lineNum}:${msg.linePos}: ${msg.message}`,
    }));
    modules.set(file, { m, messages });
  }
  return modules.get(file);
}

// Uncaptured errors would be printed by Dawn; every call below runs in an error scope instead.
device.addEventListener('uncapturederror', () => {});
const results = [];
for (const p of input.pipelines) {
  const { m, messages } = await module(p.file);
  const errors = messages.filter((x) => x.type === 'error').map((x) => x.text);
  const warnings = messages.filter((x) => x.type !== 'error' && x.type !== 'info').map((x) => x.text);
  device.pushErrorScope('validation');
  try {
    await device.createComputePipelineAsync({
      layout: 'auto',
      compute: { module: m, entryPoint: p.entry, constants: p.constants },
    });
  } catch (e) {
    errors.push(`pipeline: ${e.message}`);
  }
  const scoped = await device.popErrorScope();
  if (scoped) {
    errors.push(`pipeline: ${scoped.message}`);
  }
  results.push({ file: p.file, entry: p.entry, constants: p.constants, errors: [...new Set(errors)], warnings });
}
console.log(JSON.stringify({ limits, results }));
device.destroy();

//! The device's machinery (batching, pipeline cache, allocator, counters) and its answers to bad
//! input: typed errors naming op, shapes and values, never a panic. Tests that need an adapter
//! say SKIPPED without one (unless KILN_REQUIRE_GPU=1); the rest run on the CPU device.

use kiln_device::testing::{each_device, gpu_device, private_gpu_device, random_f32};
use kiln_device::*;

#[test]
fn launches_are_batched_and_submitted_only_when_data_is_read() {
    let Some(d) = private_gpu_device("batching") else {
        return;
    };
    let x = d
        .from_f32(&random_f32(1, 1000, -1.0, 1.0), &[10, 100])
        .unwrap();
    d.sync().unwrap();
    let before = d.counters();
    let mut y = x.clone();
    for _ in 0..100 {
        y = d.unary(UnaryOp::Tanh, &y).unwrap();
    }
    let recorded = d.counters().since(&before);
    assert_eq!(recorded.dispatches, 100);
    assert_eq!(recorded.submits, 0, "launchers must not submit");
    assert_eq!(recorded.readbacks, 0);
    d.to_f32(&y).unwrap();
    let read = d.counters().since(&before);
    assert_eq!(read.submits, 1, "one submit for the whole batch");
    assert_eq!(read.readbacks, 1);
    assert_eq!(read.bytes_down, 4000);
}

#[test]
fn pipeline_cache_compiles_each_key_once_and_tells_keys_apart() {
    let Some(d) = private_gpu_device("pipeline_cache") else {
        return;
    };
    let a = d.from_f32(&random_f32(2, 12, -1.0, 1.0), &[3, 4]).unwrap();
    let b = d.from_f32(&random_f32(3, 12, -1.0, 1.0), &[4, 3]).unwrap();
    let run = |spec| d.to_f32(&d.matmul(&a, &b, None, spec).unwrap()).unwrap();
    // A named tile: autotuning (which compiles every tile's pipeline) is not what this tests.
    let plain = MatmulSpec {
        tile: MatmulTile::Large,
        ..MatmulSpec::default()
    };
    let relu = MatmulSpec {
        activation: Activation::Relu,
        ..plain
    };
    let transposed = MatmulSpec {
        trans_a: true,
        trans_b: true,
        ..plain
    };
    run(plain);
    let compiled = d.counters().pipelines_compiled;
    run(plain);
    assert_eq!(
        d.counters().pipelines_compiled,
        compiled,
        "same key: served from the cache"
    );
    run(relu);
    assert_eq!(
        d.counters().pipelines_compiled,
        compiled + 1,
        "another override value: another pipeline"
    );
    run(transposed);
    assert_eq!(d.counters().pipelines_compiled, compiled + 2);
    run(relu);
    assert_eq!(d.counters().pipelines_compiled, compiled + 2);
    let k1 = PipelineKey::new(ShaderFamily::Matmul, "matmul_tiled", &[("ACT", 0.0)]);
    let k2 = PipelineKey::new(ShaderFamily::Matmul, "matmul_tiled", &[("ACT", 1.0)]);
    let k3 = PipelineKey::new(ShaderFamily::Matmul, "matmul_naive", &[("ACT", 0.0)]);
    assert!(k1 != k2 && k1 != k3 && k2 != k3);
}

#[test]
fn allocator_reuses_buffers_and_memory_is_flat_across_steps() {
    let Some(d) = private_gpu_device("allocator") else {
        return;
    };
    let w = d
        .from_f32(&random_f32(4, 64 * 32, -1.0, 1.0), &[64, 32])
        .unwrap();
    let step = || {
        let x = d
            .from_f32(&random_f32(5, 16 * 64, -1.0, 1.0), &[16, 64])
            .unwrap();
        let h = d.matmul(&x, &w, None, MatmulSpec::default()).unwrap();
        let y = d.unary(UnaryOp::Relu, &h).unwrap();
        d.to_f32(&d.reduce(ReduceOp::Sum, &y, 1).unwrap()).unwrap();
    };
    step();
    let after_first = d.counters();
    for _ in 0..10 {
        step();
    }
    let after = d.counters();
    assert_eq!(
        after.buffers_created, after_first.buffers_created,
        "steps after the first reuse buffers"
    );
    assert_eq!(
        after.bytes_live, after_first.bytes_live,
        "memory per step is flat"
    );
    assert_eq!(after.peak_bytes, after_first.peak_bytes);
}

#[test]
fn a_missing_entry_point_is_a_typed_shader_error_naming_file_and_entry() {
    let Some(d) = gpu_device("shader_error") else {
        return;
    };
    match d.compile(ShaderFamily::Matmul, "matmul_no_such_entry", &[]) {
        Err(Error::ShaderCompile { file, entry, .. }) => {
            assert_eq!((file, entry), ("matmul.wgsl", "matmul_no_such_entry"));
        }
        other => panic!("expected ShaderCompile, got {other:?}"),
    }
    match d.compile(
        ShaderFamily::Elementwise,
        "unary",
        &[("NO_SUCH_CONSTANT", 1.0)],
    ) {
        Err(Error::ShaderCompile {
            file: "elementwise.wgsl",
            entry: "unary",
            ..
        }) => {}
        other => panic!("expected ShaderCompile, got {other:?}"),
    }
    // The device still works afterwards.
    let t = d.from_f32(&[1.0, -1.0], &[2]).unwrap();
    assert_eq!(
        d.to_f32(&d.unary(UnaryOp::Relu, &t).unwrap()).unwrap(),
        vec![1.0, 0.0]
    );
}

#[test]
fn a_tensor_over_the_binding_limit_is_refused_before_allocation() {
    let Some(d) = gpu_device("binding_limit") else {
        return;
    };
    match d.zeros(&[1 << 31, 4]) {
        Err(Error::TooLarge {
            op,
            shape,
            bytes,
            limit,
        }) => {
            assert_eq!((op, shape), ("zeros", vec![1 << 31, 4]));
            assert!(bytes > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn gpu_ops_refuse_tensors_from_another_device() {
    let Some(d) = gpu_device("device_mismatch") else {
        return;
    };
    let cpu = Device::cpu();
    let t = cpu.from_f32(&[1.0], &[1]).unwrap();
    assert!(matches!(
        d.unary(UnaryOp::Exp, &t),
        Err(Error::DeviceMismatch { .. })
    ));
    let moved = d.to_device(&t, &cpu).unwrap();
    assert_eq!(
        d.to_f32(&d.unary(UnaryOp::Identity, &moved).unwrap())
            .unwrap(),
        vec![1.0]
    );
}

/// Bad arguments on both devices: the same typed errors from the GPU and the CPU.
#[test]
fn shape_mismatches_name_op_and_shapes() {
    for d in each_device("shape_errors") {
        let a = d.from_f32(&[0.0; 6], &[2, 3]).unwrap();
        let b = d.from_f32(&[0.0; 8], &[4, 2]).unwrap();
        let err = d.matmul(&a, &b, None, MatmulSpec::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, Error::ShapeMismatch { op: "matmul", .. }),
            "{err:?}"
        );
        assert!(text.contains("[2, 3]") && text.contains("[4, 2]"), "{text}");

        let bias = d.from_f32(&[0.0; 3], &[3]).unwrap();
        let b = d.from_f32(&[0.0; 6], &[3, 2]).unwrap();
        let err = d
            .matmul(&a, &b, Some(&bias), MatmulSpec::default())
            .unwrap_err();
        assert!(err.to_string().contains("bias of shape [2]"), "{err}");

        let a3 = d.from_f32(&[0.0; 12], &[2, 2, 3]).unwrap();
        let b3 = d.from_f32(&[0.0; 12], &[2, 3, 2]).unwrap();
        let relu = MatmulSpec {
            activation: Activation::Relu,
            ..MatmulSpec::default()
        };
        let err = d.matmul_sum_batch(&a3, &b3, relu).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    op: "matmul_sum_batch",
                    ..
                }
            ) && err.to_string().contains("then apply it"),
            "{err}"
        );
        let b_other = d.from_f32(&[0.0; 18], &[3, 3, 2]).unwrap();
        assert!(matches!(
            d.matmul_sum_batch(&a3, &b_other, MatmulSpec::default()),
            Err(Error::ShapeMismatch {
                op: "matmul_sum_batch",
                ..
            })
        ));

        let row = d.from_f32(&[0.0; 2], &[2]).unwrap();
        assert!(matches!(
            d.add(&a, &row),
            Err(Error::ShapeMismatch { op: "binary", .. })
        ));
        assert!(matches!(
            d.reduce(ReduceOp::Sum, &a, 2),
            Err(Error::InvalidArgument { op: "reduce", .. })
        ));
        assert!(matches!(
            d.from_f32(&[1.0; 5], &[2, 3]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            a.reshape(&[4, 2]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            d.zeros(&[0, 3]),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn wrong_dtypes_are_refused() {
    for d in each_device("dtype_errors") {
        let ids = d.from_u32(&[1, 2, 3], &[3]).unwrap();
        let f = d.from_f32(&[1.0, 2.0, 3.0], &[3]).unwrap();
        let table = d.from_f32(&[0.0; 8], &[4, 2]).unwrap();
        assert!(matches!(
            d.unary(UnaryOp::Exp, &ids),
            Err(Error::DType {
                expected: DType::F32,
                got: DType::U32,
                ..
            })
        ));
        assert!(matches!(
            d.embedding(&table, &f),
            Err(Error::DType { arg: "ids", .. })
        ));
        assert!(matches!(d.to_u32(&f), Err(Error::DType { .. })));
    }
}

#[test]
fn token_ids_past_the_vocabulary_are_refused_with_the_offending_value() {
    for d in each_device("index_errors") {
        let table = d.from_f32(&[0.0; 10], &[5, 2]).unwrap();
        let ids = d.from_u32(&[0, 4, 7, 1], &[4]).unwrap();
        match d.embedding(&table, &ids) {
            Err(Error::IndexOutOfRange {
                op: "embedding",
                value: 7,
                limit: 5,
                position: 2,
            }) => {}
            other => panic!("expected IndexOutOfRange, got {other:?}"),
        }
        let dtable = d.zeros(&[5, 2]).unwrap();
        let dout = d.zeros(&[4, 2]).unwrap();
        assert!(matches!(
            d.embedding_backward(&dtable, &dout, &ids),
            Err(Error::IndexOutOfRange { .. })
        ));
        // Ids computed on the device (no host-side bound) are checked too.
        let scores = d
            .from_f32(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], &[1, 8])
            .unwrap();
        let argmax = d.argmax(&scores, 1).unwrap(); // 3, below 5
        assert!(d.embedding(&table, &argmax).is_ok());
    }
}

#[test]
fn optimizer_arguments_are_checked() {
    for d in each_device("optimizer_errors") {
        let w = d.zeros(&[4]).unwrap();
        let g = d.zeros(&[4]).unwrap();
        let m = d.zeros(&[3]).unwrap();
        let v = d.zeros(&[4]).unwrap();
        let cfg = AdamConfig::default();
        assert!(matches!(
            d.adam_update(&cfg, 1, &w, &g, &m, &v),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            d.adam_update(&cfg, 1, &w, &g, &w, &v),
            Err(Error::InvalidArgument { .. })
        ));
        let m = d.zeros(&[4]).unwrap();
        assert!(matches!(
            d.adam_update(&cfg, 0, &w, &g, &m, &v),
            Err(Error::InvalidArgument { .. })
        ));
        let x = d.zeros(&[4]).unwrap();
        assert!(matches!(
            d.dropout(&x, 1.0, 0, 0),
            Err(Error::InvalidArgument { op: "dropout", .. })
        ));
    }
}

#[test]
fn device_choices_parse_and_unknown_ones_are_errors() {
    assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
    assert_eq!("".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
    assert_eq!(
        "Vulkan".parse::<DeviceChoice>().unwrap(),
        DeviceChoice::Gpu {
            backend: Some(wgpu_backend_vulkan()),
            name: None
        }
    );
    assert_eq!(
        "name:llvmpipe".parse::<DeviceChoice>().unwrap(),
        DeviceChoice::Gpu {
            backend: None,
            name: Some("llvmpipe".into())
        }
    );
    assert!(matches!(
        "tpu".parse::<DeviceChoice>(),
        Err(Error::BadDeviceChoice { .. })
    ));
    assert!(matches!(
        "name:".parse::<DeviceChoice>(),
        Err(Error::BadDeviceChoice { .. })
    ));
    assert_eq!(
        " 1".parse::<DeviceChoice>().unwrap(),
        DeviceChoice::Adapter(1)
    );
    assert_eq!(DeviceChoice::Adapter(1).to_string(), "1");
    assert!(matches!(
        "-1".parse::<DeviceChoice>(),
        Err(Error::BadDeviceChoice { .. })
    ));
}

/// `--device N` opens the adapter `list_adapters` puts at N; past the list, a NoAdapter error.
#[test]
fn an_adapter_is_chosen_by_its_place_in_the_list() {
    let adapters = kiln_device::list_adapters();
    for (i, a) in adapters.iter().enumerate() {
        let d = Device::new(&DeviceChoice::Adapter(i)).unwrap();
        assert_eq!(
            d.name(),
            format!("{} ({})", a.name, a.backend),
            "adapter {i}"
        );
    }
    let past = Device::new(&DeviceChoice::Adapter(adapters.len()));
    assert!(matches!(past, Err(Error::NoAdapter { .. })));
}

fn wgpu_backend_vulkan() -> kiln_device::adapter::Backend {
    kiln_device::adapter::Backend::Vulkan
}

#[test]
fn an_explicit_gpu_choice_that_matches_nothing_is_an_error_with_a_hint() {
    let choice: DeviceChoice = "name:no-such-adapter-anywhere".parse().unwrap();
    match Device::new(&choice) {
        Err(e @ Error::NoAdapter { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("no-such-adapter-anywhere") && text.contains("lavapipe"),
                "{text}"
            );
        }
        Err(other) => panic!("expected NoAdapter, got {other:?}"),
        Ok(d) => panic!("matched {}", d.name()),
    }
    assert!(!Device::new(&DeviceChoice::Cpu).unwrap().is_gpu());
}

#[test]
fn dispatch_dims_split_large_counts_within_the_limit() {
    assert_eq!(dispatch_dims(1, 65_535), Some((1, 1)));
    assert_eq!(dispatch_dims(65_535, 65_535), Some((65_535, 1)));
    assert_eq!(dispatch_dims(65_536, 65_535), Some((65_535, 2)));
    let (x, y) = dispatch_dims(10_000_000, 65_535).unwrap();
    assert!(x as u64 * y as u64 >= 10_000_000 && y <= 65_535);
    assert_eq!(dispatch_dims(65_535u64 * 65_535 + 1, 65_535), None);
}

#[test]
fn packed_views_are_aligned_and_independent() {
    for d in each_device("packed_views") {
        let (flat, views) = d.packed_zeros(&[vec![3], vec![2, 2]]).unwrap();
        d.write_f32(&views[1], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        d.write_f32(&views[0], &[5.0, 6.0, 7.0]).unwrap();
        assert_eq!(d.to_f32(&views[1]).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(d.to_f32(&views[0]).unwrap(), vec![5.0, 6.0, 7.0]);
        let all = d.to_f32(&flat).unwrap();
        assert_eq!(all.len(), 2 * d.pack_alignment());
        assert_eq!(
            &all[d.pack_alignment()..d.pack_alignment() + 4],
            &[1.0, 2.0, 3.0, 4.0]
        );
        // A view works as a kernel operand at its offset.
        let y = d.unary(UnaryOp::Scale(2.0), &views[1]).unwrap();
        assert_eq!(d.to_f32(&y).unwrap(), vec![2.0, 4.0, 6.0, 8.0]);
    }
}

#[test]
fn copy_into_places_values_at_an_offset() {
    for d in each_device("copy_into") {
        let dst = d.zeros(&[6]).unwrap();
        let src = d.from_f32(&[1.0, 2.0], &[2]).unwrap();
        d.copy_into(&dst, 3, &src).unwrap();
        d.copy_into(&dst, 0, &src).unwrap();
        assert_eq!(d.to_f32(&dst).unwrap(), vec![1.0, 2.0, 0.0, 1.0, 2.0, 0.0]);
        assert!(matches!(
            d.copy_into(&dst, 5, &src),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}

/// `Device::profile` names every kernel it times, in launch order, on the adapter (GPU
/// timestamps) and on the CPU device (the wall clock).
#[test]
fn profile_times_every_kernel_in_order() {
    let mut devices = vec![Device::cpu()];
    // A device of its own: no other test launches into this profile.
    devices.extend(private_gpu_device("profile_times_every_kernel_in_order"));
    for d in devices {
        let a = d.from_f32(&[0.5; 64 * 64], &[64, 64]).unwrap();
        let ((), p) = d
            .profile(|| {
                // A named tile: an Auto one is whichever autotuning measured faster.
                let spec = MatmulSpec {
                    tile: MatmulTile::Large,
                    ..MatmulSpec::default()
                };
                let b = d.matmul(&a, &a, None, spec)?;
                let c = d.unary(UnaryOp::Tanh, &b)?;
                d.reduce(ReduceOp::Sum, &c, 1)?;
                Ok(())
            })
            .unwrap();
        let names: Vec<_> = p.spans.iter().map(|s| s.name).collect();
        if d.is_gpu() {
            if !d.has_timestamps() {
                assert_eq!(p.clock, ProfileClock::None);
                continue;
            }
            assert_eq!(p.clock, ProfileClock::GpuTimestamps);
            assert_eq!(names, ["matmul_tiled", "unary", "reduce"]);
        } else {
            assert_eq!(p.clock, ProfileClock::WallClock);
            assert_eq!(names, ["matmul", "unary", "reduce"]);
        }
        assert!(p.spans.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
        assert!(p.spans.iter().all(|s| s.ms >= 0.0));
        assert_eq!(p.by_kernel().len(), 3);
        // Outside a profile, nothing is recorded.
        let ((), again) = d.profile(|| Ok(())).unwrap();
        assert!(again.spans.is_empty());
    }
}

/// The CPU device keeps freed buffers for reuse and hands them out zeroed: a new tensor of a freed
/// one's size reads as zeros, not as the old values.
#[test]
fn cpu_device_reuses_freed_buffers_zeroed() {
    let d = Device::cpu();
    let old = d.from_f32(&[7.0; 1000], &[1000]).unwrap();
    assert_eq!(d.cached_bytes(), 0);
    drop(old);
    assert_eq!(d.cached_bytes(), 4000);
    let z = d.zeros(&[1000]).unwrap();
    assert_eq!(d.cached_bytes(), 0, "the freed buffer was taken again");
    assert_eq!(d.to_f32(&z).unwrap(), vec![0.0; 1000]);
    drop(z);
    let live = d.counters().bytes_live;
    d.empty_cache();
    assert_eq!(d.cached_bytes(), 0);
    assert_eq!(
        d.counters().bytes_live,
        live,
        "cached bytes are not live tensors"
    );
}

/// An Auto matmul of a class the adapter has not measured times each tile first, keeps the
/// choice, and counts as one dispatch: the measuring runs stay out of the caller's figures.
#[test]
fn autotuning_measures_once_per_class_and_is_not_counted() {
    let Some(d) = private_gpu_device("autotuning") else {
        return;
    };
    d.set_tune_mode(TuneMode::Remeasure);
    let (m, n, k) = (37, 300, 20);
    let a = d
        .from_f32(&random_f32(1, m * k, -1.0, 1.0), &[m, k])
        .unwrap();
    let b = d
        .from_f32(&random_f32(2, k * n, -1.0, 1.0), &[k, n])
        .unwrap();
    let before = d.counters();
    let first = d.matmul(&a, &b, None, MatmulSpec::default()).unwrap();
    d.sync().unwrap();
    let spent = d.counters().since(&before);
    assert_eq!(spent.dispatches, 1, "the measuring runs are not counted");
    let class = "matmul_tiled:m64:n512:k32:batched0:ta0:tb0";
    let choices = d.tuned_choices();
    let choice = choices.iter().find(|(c, _)| c == class);
    assert!(
        matches!(choice, Some((_, t)) if ["large", "medium", "small"].contains(&t.as_str())),
        "{choices:?}"
    );
    // Test devices tune in memory: nothing read from or written to the user's cache.
    assert!(d.tune_file().is_none());
    assert_eq!(d.tuned_choices(), d.tuned_here());
    // Known now: the same class again neither measures nor changes the result.
    let again = d.matmul(&a, &b, None, MatmulSpec::default()).unwrap();
    assert_eq!(d.to_f32(&again).unwrap(), d.to_f32(&first).unwrap());
    d.set_tune_mode(TuneMode::Off);
    assert!(d.tuned_choices().iter().any(|(c, _)| c == class));
}

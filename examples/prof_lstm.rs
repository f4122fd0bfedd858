use kiln_device::testing::random_f32;
use kiln_device::*;
fn main() {
    let d = Device::new(&DeviceChoice::Gpu {
        backend: None,
        name: None,
    })
    .unwrap();
    for &(b, t, e, h) in &[
        (16usize, 62usize, 64usize, 64usize),
        (16, 62, 128, 32),
        (256, 62, 64, 64),
        (16, 62, 256, 256),
    ] {
        let x = d
            .from_f32(&random_f32(1, b * t * e, -1.0, 1.0), &[b, t, e])
            .unwrap();
        let k = d
            .from_f32(&random_f32(2, 2 * e * 4 * h, -0.1, 0.1), &[2, e, 4 * h])
            .unwrap();
        let r = d
            .from_f32(&random_f32(3, 2 * h * 4 * h, -0.1, 0.1), &[2, h, 4 * h])
            .unwrap();
        let bi = d
            .from_f32(&random_f32(4, 2 * 4 * h, -0.1, 0.1), &[2, 4 * h])
            .unwrap();
        let dy = d
            .from_f32(&random_f32(5, b * t * 2 * h, -0.1, 0.1), &[b, t, 2 * h])
            .unwrap();
        for rep in 0..3 {
            let (st, fwd) = d
                .gpu_time(|| d.lstm_forward(&x, &k, &r, &bi, None, None, true))
                .unwrap();
            d.sync().unwrap();
            let xp = d
                .matmul(
                    &x.reshape(&[b * t, e]).unwrap(),
                    &k,
                    None,
                    MatmulSpec::default(),
                )
                .unwrap();
            d.sync().unwrap();
            let (_, mm) = d
                .gpu_time(|| {
                    d.matmul(
                        &x.reshape(&[b * t, e]).unwrap(),
                        &k,
                        None,
                        MatmulSpec::default(),
                    )
                })
                .unwrap();
            d.sync().unwrap();
            let (_, rec) = d
                .gpu_time(|| d.lstm_recurrence(&xp, &r, &bi, None, None, (b, t), true))
                .unwrap();
            d.sync().unwrap();
            let (_, bwdr) = d
                .gpu_time(|| {
                    d.lstm_recurrence_backward(
                        &st,
                        &r,
                        None,
                        None,
                        LstmOutputGrads {
                            dy: Some(&dy),
                            dh_last: None,
                            dc_last: None,
                        },
                    )
                })
                .unwrap();
            d.sync().unwrap();
            let (_, bwd) = d
                .gpu_time(|| {
                    d.lstm_backward(
                        &x,
                        &k,
                        &r,
                        &st,
                        None,
                        None,
                        LstmOutputGrads {
                            dy: Some(&dy),
                            dh_last: None,
                            dc_last: None,
                        },
                        true,
                    )
                })
                .unwrap();
            d.sync().unwrap();
            if rep == 2 {
                println!(
                    "B{b} T{t} E{e} H{h}: fwd {:?} (xproj {:?} rec {:?}) bwd {:?} (rec {:?})",
                    fwd, mm, rec, bwd, bwdr
                );
            }
        }
    }
}

//! Why the binary codec is postcard: encoding then decoding the bank's
//! events, 100,000 of them, with postcard ("framework") and with
//! MessagePack through rmp-serde ("baseline"), in the same run.

use std::hint::black_box;

use benches::workloads::events;
use criterion::{Criterion, criterion_group, criterion_main};
use examples::bank::{AccountOpened, MoneyDeposited};

fn codecs(c: &mut Criterion) {
    let (_, by_hand) = events(100_000);
    let deposits: Vec<MoneyDeposited> = by_hand
        .iter()
        .filter_map(|e| match e {
            benches::baseline::Event::Deposited(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    let opened = AccountOpened {
        owner: "Ada Lovelace".into(),
    };
    let mut g = c.benchmark_group("binary_codec_round_trip_100k");
    g.sample_size(20);
    g.bench_function("framework", |b| {
        b.iter(|| {
            let mut total = 0;
            for d in &deposits {
                let bytes = postcard::to_stdvec(black_box(d)).unwrap();
                total += postcard::from_bytes::<MoneyDeposited>(&bytes).unwrap().amount;
            }
            let bytes = postcard::to_stdvec(&opened).unwrap();
            total + postcard::from_bytes::<AccountOpened>(&bytes).unwrap().owner.len() as u64
        })
    });
    g.bench_function("baseline", |b| {
        b.iter(|| {
            let mut total = 0;
            for d in &deposits {
                let bytes = rmp_serde::to_vec_named(black_box(d)).unwrap();
                total += rmp_serde::from_slice::<MoneyDeposited>(&bytes).unwrap().amount;
            }
            let bytes = rmp_serde::to_vec_named(&opened).unwrap();
            total + rmp_serde::from_slice::<AccountOpened>(&bytes).unwrap().owner.len() as u64
        })
    });
    g.finish();
}

criterion_group!(choice, codecs);
criterion_main!(choice);

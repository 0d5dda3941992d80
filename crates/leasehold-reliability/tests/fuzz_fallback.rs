//! The stable-toolchain fallback for the fuzz targets: the same target bodies
//! as `fuzz/` (see `leasehold_reliability::fuzz`), driven by a seeded loop of
//! random and mutated inputs instead of libFuzzer's coverage guidance. Runs
//! in the quick tier; `LEASEHOLD_SOAK=1` runs 20x more iterations;
//! `LEASEHOLD_SEED` replays a run.

use leasehold_reliability::{fuzz, sizes};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seed inputs (valid and near-valid), mutated by the loop.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let s: &[&str] = match target {
        "timestamp" => &[
            "2026-06-03T10:00:00Z",
            "2026-06-03T10:00:00.123456+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-06-03T10:00:00",
            "2026-02-30T10:00:00Z",
        ],
        "duration" => &[
            "30s",
            "5m",
            "1h 30m",
            "0s",
            "1us",
            "18446744073709551615s",
            "2y",
        ],
        "id" => &["task-1", "a/b:c.d_e", "", "ünïcode", "x y"],
        "json_request" => &[
            "\u{0}{\"task_id\":\"n1\",\"saga_id\":\"s9\"}",
            "\u{2}{\"owner\":\"w\",\"ttl_ms\":30000}",
            "\u{3}{\"owner\":\"w\",\"token\":1,\"ttl_ms\":30000}",
            "\u{4}{\"owner\":\"w\",\"token\":1}",
            "\u{6}{\"reason\":\"x\",\"owner\":\"w\",\"token\":1}",
            "\u{b}{\"owner\":\"w\",\"queues\":[\"default\"],\"ttl_ms\":1000,\"limit\":3}",
            "\u{c}{\"max_attempts\":0}",
            "\u{a}{\"status\":\"applied\",\"detail\":null}",
            "\u{1}{\"task_id\":\"t1\",\"saga_id\":\"s1\",\"state\":\"planned\"}",
            "\u{e}{\"leases\":[{\"task_id\":\"t1\",\"owner\":\"w\",\"token\":1}],\"ttl_ms\":1000}",
            "\u{f}{\"leases\":[{\"task_id\":\"t1\",\"owner\":\"w\",\"token\":1}],\"reason\":\"done\"}",
        ],
        _ => &[
            "",
            "\u{0}\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}\u{9}\u{a}\u{b}\u{c}",
        ],
    };
    s.iter().map(|x| x.as_bytes().to_vec()).collect()
}

fn input(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.gen_bool(0.3) {
        let n = rng.gen_range(0..64);
        return (0..n).map(|_| rng.gen()).collect();
    }
    let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(0..4) {
        match rng.gen_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v.remove(i);
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                v.insert(i, rng.gen());
            }
            _ => {
                let i = rng.gen_range(0..=v.len());
                let digits = b"0123456789-:TZ.+\"{}[],";
                v.insert(i, digits[rng.gen_range(0..digits.len())]);
            }
        }
    }
    v
}

fn drive(target: &str, f: fn(&[u8]), iterations: usize) {
    let seed = sizes::seed(0x5eed);
    let mut rng = StdRng::seed_from_u64(seed ^ target.len() as u64);
    let seeds = seeds(target);
    for s in &seeds {
        f(s);
    }
    for i in 0..iterations {
        let data = if target == "machine" {
            // The machine target wants long command streams.
            let n = rng.gen_range(0..600);
            (0..n).map(|_| rng.gen()).collect()
        } else {
            input(&mut rng, &seeds)
        };
        let r = std::panic::catch_unwind(|| f(&data));
        if r.is_err() {
            panic!("fuzz target {target} failed at iteration {i} (seed {seed}) on input {data:?}");
        }
    }
    eprintln!(
        "fuzz fallback {target}: {} inputs, seed {seed}, 0 failures",
        iterations + seeds.len()
    );
}

#[test]
fn fuzz_timestamp() {
    drive("timestamp", fuzz::timestamp, sizes::pick(20_000, 400_000));
}

#[test]
fn fuzz_duration() {
    drive("duration", fuzz::duration, sizes::pick(20_000, 400_000));
}

#[test]
fn fuzz_id() {
    drive("id", fuzz::id, sizes::pick(20_000, 400_000));
}

#[test]
fn fuzz_json_request() {
    drive(
        "json_request",
        fuzz::json_request,
        sizes::pick(1_500, 30_000),
    );
}

#[test]
fn fuzz_machine() {
    drive("machine", fuzz::machine, sizes::pick(2_000, 40_000));
}

/// The machine target's inputs are not vacuous: random streams get commands
/// accepted and rejected and leases granted, across many tasks.
#[test]
fn fuzz_machine_reaches_leases_and_rejections() {
    let mut rng = StdRng::seed_from_u64(1);
    let (mut a, mut r, mut l) = (0, 0, 0);
    for _ in 0..200 {
        let n = rng.gen_range(0..600);
        let data: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        let (x, y, z) = fuzz::machine_counted(&data);
        a += x;
        r += y;
        l += z;
    }
    eprintln!("machine target over 200 random streams: {a} accepted, {r} rejected, {l} leases");
    assert!(a > 1000 && r > 1000 && l > 100, "{a} {r} {l}");
}

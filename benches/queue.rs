//! Queue benchmark: tasks per second through the whole queue with an
//! instant in-process upstream, and the time each task spends in the queue's
//! own code. Run: `cargo bench --bench queue` (BENCH_TASKS, BENCH_WORKERS,
//! BENCH_SIDE for the upstream's image size, 64 by default; BENCH_BACKEND=s3
//! to store results in a local S3-compatible server, s3s-fs;
//! add `-- normal` for storage.synchronous = "normal"). `cargo bench --bench
//! report` includes it.

mod common;

fn main() {
    let normal = std::env::args().any(|a| a == "normal");
    let tasks: usize = common::env_or("BENCH_TASKS", 4000);
    let workers: usize = common::env_or("BENCH_WORKERS", 2);
    let side: u32 = common::env_or("BENCH_SIDE", 64);
    let q = common::queue::run(normal, tasks, workers, side);
    println!(
        "queue benchmark: {tasks} tasks, {workers} threads, {side}² images, synchronous={}, storage={}",
        if normal { "NORMAL" } else { "FULL" },
        std::env::var("BENCH_BACKEND").unwrap_or_else(|_| "local".into())
    );
    println!("  submit:           {:>8.0} tasks/s", q.submit_rate);
    println!("  run (end to end): {:>8.0} tasks/s", q.run_rate);
    if let Some(rate) = q.two_nodes_rate {
        println!("  two nodes × {workers} workers: {rate:>8.0} tasks/s");
    }
    println!(
        "  added latency per task, one worker: p50 {:.2} ms, p99 {:.2} ms",
        q.added_p50_ms, q.added_p99_ms
    );
}

//! What the benchmarks (`enspace-bench`) share: made-up events and request
//! records, NATS servers and `enspace` processes started and measured
//! (`support`), wrk runs (`wrk`), and how every benchmark says whether it
//! met its target (`verdict`).

pub mod support;
pub mod verdict;
pub mod wrk;

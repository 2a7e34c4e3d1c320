//! What the benchmarks (`enspace-bench`) share: made-up events and request
//! records, NATS servers and `enspace` processes started and measured
//! (`support`), NATS clusters and `enspace tokens --cluster` processes
//! (`cluster`), wrk runs (`wrk`), and how every benchmark says whether it
//! met its target (`verdict`).

pub mod cluster;
pub mod support;
pub mod verdict;
pub mod wrk;

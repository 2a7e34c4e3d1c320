//! The `enspace` binary as a child process, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct EnspaceProcess {
    pub child: Child,
    pub base: String,
    /// Everything the process wrote to stderr (its logs), as it arrives.
    pub stderr: Arc<Mutex<String>>,
}

/// How long a graceful stop may take (the contract's 15 s, and some room).
const STOP_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_enspace")
}

impl EnspaceProcess {
    /// Starts `enspace <args…> --listen 127.0.0.1:0` and waits for its address.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary())
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start enspace");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if !sent && let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                    sent = true;
                }
            }
        });
        let base = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("enspace did not start: {}", stderr.lock().expect("lock")));
        EnspaceProcess {
            child,
            base,
            stderr,
        }
    }

    pub fn serve(data: &Path) -> Self {
        Self::start(
            &["serve", "--data", data.to_str().expect("utf-8 path")],
            &[],
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to 20 s for the process to exit, and asserts
    /// that it shut down cleanly (exit status 0). A process still running
    /// after that is killed, and the test fails.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + STOP_WITHIN;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                _ => {
                    self.kill();
                    panic!(
                        "enspace did not stop within {STOP_WITHIN:?} of SIGTERM: {}",
                        self.logs()
                    );
                }
            }
        };
        assert!(
            status.success(),
            "enspace stopped with {status} after SIGTERM: {}",
            self.logs()
        );
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}

impl Drop for EnspaceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `enspace audit …` to completion: (exit code, stdout).
pub fn audit(args: &[&str]) -> (i32, String) {
    let out = Command::new(binary())
        .arg("audit")
        .args(args)
        .output()
        .expect("run enspace audit");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

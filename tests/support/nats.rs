//! A real nats-server with JetStream for one test: its own port and store
//! dir, killed on drop, restartable on the same port and store.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub store: tempfile::TempDir,
    config: Config,
}

/// A configuration file and the environment it reads.
#[derive(Default, Clone)]
pub struct Config {
    pub file: Option<std::path::PathBuf>,
    pub env: Vec<(String, String)>,
}

fn spawn(port: Option<u16>, store: &std::path::Path, config: &Config) -> (Child, u16) {
    let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
    let mut command = Command::new("nats-server");
    if let Some(file) = &config.file {
        command.arg("-c").arg(file);
    }
    let mut child = command
        .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
        .arg(store)
        .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nats-server (is it on PATH? tests/run installs it)");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                let port = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
                let _ = tx.send(port);
                sent = true;
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("nats-server did not report its port");
    (child, port)
}

impl NatsServer {
    pub fn start() -> Self {
        Self::start_with(Config::default())
    }

    /// With a configuration file (its port and store dir overridden).
    pub fn start_with(config: Config) -> Self {
        let store = tempfile::tempdir().expect("temp dir");
        let (child, port) = spawn(None, store.path(), &config);
        NatsServer {
            child: Some(child),
            port,
            store,
            config,
        }
    }

    /// The URL with a user and password.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        let (child, _) = spawn(Some(self.port), self.store.path(), &self.config);
        self.child = Some(child);
    }

    /// Stops, loses everything JetStream stored, and starts again on the
    /// same port: a lost NATS disk.
    pub fn wipe_store_and_restart(&mut self) {
        self.stop();
        for entry in std::fs::read_dir(self.store.path()).expect("store dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("wipe");
            } else {
                std::fs::remove_file(&path).expect("wipe");
            }
        }
        let (child, _) = spawn(Some(self.port), self.store.path(), &self.config);
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

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
    /// Holds a configuration file written for this server.
    _config_dir: Option<tempfile::TempDir>,
}

/// The passwords the shipped configuration's users get in tests.
pub const TOKENS_PASSWORD: &str = "tokens-pw";
pub const NODE_PASSWORD: &str = "node-pw";

/// What the control plane is given with the shipped configuration: the
/// prefix it imports the API nodes' JetStream API under.
pub const EDGE_FLAGS: [&str; 2] = ["--nats-edge-api", enspace_nats::edge::EDGE_API];

/// The shipped `deploy/nats.conf`.
pub fn shipped_config_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nats.conf")
}

/// An API node's own NATS user in EDGE, as the README's "Adding an API
/// node" shows it: its password from `ENSPACE_NATS_<USER>_PASSWORD` and its
/// own inbox prefix.
pub fn node_user_block(user: &str) -> String {
    format!(
        r#"
      {{
        user: {user}
        password: ${}
        permissions: {{
          publish: {{ allow: $EDGE_NODE_PUBLISH }}
          subscribe: {{ allow: ["_INBOX.{user}.>", "enspace.token-heartbeat"] }}
        }}
      }}"#,
        password_variable(user)
    )
}

fn password_variable(user: &str) -> String {
    format!(
        "ENSPACE_NATS_{}_PASSWORD",
        user.to_uppercase().replace('-', "_")
    )
}

/// The password tests give an added node user.
pub fn node_user_password(user: &str) -> String {
    format!("{user}-pw")
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
    let port = listening(&mut child, &["client"])[0];
    (child, port)
}

/// The ports a just-spawned nats-server (its stderr piped) reports it
/// listens on, one per kind in `kinds` ("client", "route"), read from its
/// "Listening for <kind> connections on" lines; its stderr is drained
/// afterwards. Panics if it has not reported them within 20 s.
pub fn listening(child: &mut Child, kinds: &[&str]) -> Vec<u16> {
    let stderr = child.stderr.take().expect("stderr piped");
    let wanted: Vec<String> = kinds
        .iter()
        .map(|k| format!("Listening for {k} connections on "))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for (i, marker) in wanted.iter().enumerate() {
                if let Some(rest) = line.split(marker.as_str()).nth(1) {
                    let port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                    let _ = tx.send((i, port));
                }
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ports: Vec<Option<u16>> = vec![None; kinds.len()];
    while ports.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, Some(port))) => ports[i] = Some(port),
            Ok((_, None)) | Err(_) => {
                panic!("nats-server did not report its {kinds:?} ports: {ports:?}")
            }
        }
    }
    ports.into_iter().flatten().collect()
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
            _config_dir: None,
        }
    }

    /// With the shipped `deploy/nats.conf`: the control plane's account and
    /// the API nodes', users `enspace-tokens` and `enspace-node`.
    pub fn shipped() -> Self {
        Self::shipped_with_node_users(&[])
    }

    /// The shipped configuration with an API node user of its own for each
    /// of `users` added to the nodes' account (see [`node_user_block`]).
    pub fn shipped_with_node_users(users: &[&str]) -> Self {
        let text = std::fs::read_to_string(shipped_config_path()).expect("deploy/nats.conf");
        let edge = text.find("EDGE {").expect("the EDGE account");
        let users_at =
            edge + text[edge..].find("users: [").expect("EDGE's users") + "users: [".len();
        let added: String = users
            .iter()
            .map(|u| format!("{},", node_user_block(u)))
            .collect();
        let text = format!("{}{added}{}", &text[..users_at], &text[users_at..]);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("nats.conf");
        std::fs::write(&file, text).expect("write the configuration");
        let mut env = vec![
            (
                "ENSPACE_NATS_TOKENS_PASSWORD".to_owned(),
                TOKENS_PASSWORD.to_owned(),
            ),
            (
                "ENSPACE_NATS_NODE_PASSWORD".to_owned(),
                NODE_PASSWORD.to_owned(),
            ),
        ];
        env.extend(
            users
                .iter()
                .map(|u| (password_variable(u), node_user_password(u))),
        );
        let mut server = Self::start_with(Config {
            file: Some(file),
            env,
        });
        server._config_dir = Some(dir);
        server
    }

    /// The shipped configuration's control-plane user (account CONTROL).
    pub fn tokens_url(&self) -> String {
        self.url_as("enspace-tokens", TOKENS_PASSWORD)
    }

    /// The shipped configuration's API node user (account EDGE).
    pub fn node_url(&self) -> String {
        self.url_as("enspace-node", NODE_PASSWORD)
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

    /// Freezes the server (SIGSTOP): connections stay open, nothing is
    /// answered until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill {signal}");
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

//! The browser harness for the UI tests: a chromedriver on a port it picks
//! driving headless Chromium with a fresh profile, one browser at a time
//! (two cores), and the user-like actions the tests are written in (click
//! after scrolling clear of the sticky top bar, type, press keys, wait for a
//! selector or a JS condition). Screenshots of every state a test passes
//! through go under `target/ui-screenshots/`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::eventually;

pub const WAIT: Duration = Duration::from_secs(30);

/// One browser at a time: Chromium is heavy on a two-core machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts chromedriver on a port it picks (`--port=0`) and answers it and
/// that port, read from its "started successfully on port N" line.
fn start_driver() -> (Child, u16) {
    let mut driver = Command::new(which("chromedriver", "/usr/bin/chromedriver"))
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver (apt-get install chromium-driver)");
    let stdout = driver.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim().trim_end_matches('.').parse::<u16>().ok());
            }
        }
    });
    let port = rx
        .recv_timeout(WAIT)
        .ok()
        .flatten()
        .expect("chromedriver did not report its port");
    (driver, port)
}

fn which(name: &str, fallback: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| fallback.to_owned())
}

pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots")
}

/// chromedriver + Chromium with a fresh profile, and the page under test.
pub struct Ui {
    pub client: Client,
    driver: Child,
    driver_port: u16,
    session: Option<String>,
    base: String,
    name: &'static str,
    shots: u32,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Ui {
    pub async fn start(base: &str, name: &'static str) -> Ui {
        Self::start_sized(base, name, 1280, 860).await
    }

    pub async fn start_sized(base: &str, name: &'static str, width: u32, height: u32) -> Ui {
        let turn = BROWSER.lock().await;
        let (driver, port) = start_driver();
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        eventually(WAIT, "chromedriver /status", || async {
            let res = http.get(&status).send().await.ok()?;
            res.status().is_success().then_some(())
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": which("chromium", "/usr/bin/chromium"),
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--lang=en-US",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session");
        let session = client.session_id().await.ok().flatten();
        let mut ui = Ui {
            client,
            driver,
            driver_port: port,
            session,
            base: base.trim_end_matches('/').to_owned(),
            name,
            shots: 0,
            _profile: profile,
            _turn: turn,
        };
        // Reading the clipboard back is a permission the page itself never asks for.
        ui.grant_clipboard().await;
        ui.shots = 0;
        ui
    }

    async fn grant_clipboard(&mut self) {
        let Some(session) = self.session.clone() else {
            return;
        };
        let http = reqwest::Client::new();
        let _ = http
            .post(format!(
                "http://127.0.0.1:{}/session/{session}/goog/cdp/execute",
                self.driver_port
            ))
            .json(&json!({"cmd": "Browser.grantPermissions", "params": {
                "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}}))
            .send()
            .await;
        for name in ["clipboard-read", "clipboard-write"] {
            let _ = http
                .post(format!(
                    "http://127.0.0.1:{}/session/{session}/permissions",
                    self.driver_port
                ))
                .json(&json!({"descriptor": {"name": name}, "state": "granted"}))
                .send()
                .await;
        }
    }

    /// The page's console messages and uncaught errors (for failures).
    pub async fn browser_log(&self) -> String {
        let Some(session) = &self.session else {
            return String::new();
        };
        let res = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/session/{session}/se/log",
                self.driver_port
            ))
            .json(&json!({"type": "browser"}))
            .send()
            .await;
        match res {
            Ok(res) => res.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(el) => el,
            Err(e) => {
                self.shot(&format!(
                    "FAILED-waiting-for-{}",
                    css.replace(['#', ' ', '[', ']', '"', '='], "_")
                ))
                .await;
                panic!(
                    "no element {css}: {e}\nbrowser log: {}",
                    self.browser_log().await
                );
            }
        }
    }

    /// Polls a JS expression until it is truthy; returns its value.
    pub async fn until(&self, what: &str, expr: &str) -> Value {
        let script = format!("return ({expr});");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Ok(v) = self.client.execute(&script, vec![]).await
                && !matches!(&v, Value::Null | Value::Bool(false))
                && v != json!("")
                && v != json!(0)
            {
                return v;
            }
            if std::time::Instant::now() > deadline {
                self.shot(&format!("FAILED-{}", what.replace(' ', "-")))
                    .await;
                panic!(
                    "timed out waiting for {what} ({expr})\nbrowser log: {}",
                    self.browser_log().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn js(&self, expr: &str) -> Value {
        self.client
            .execute(&format!("return ({expr});"), vec![])
            .await
            .expect("execute script")
    }

    pub async fn js_str(&self, expr: &str) -> String {
        match self.js(expr).await {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    /// Clicks like a user who first scrolls the element clear of the sticky top bar.
    pub async fn click(&self, css: &str) {
        let el = self.wait(css).await;
        let arg = serde_json::to_value(&el).expect("element reference");
        let _ = self
            .client
            .execute("arguments[0].scrollIntoView({block: 'center'});", vec![arg])
            .await;
        el.click().await.expect("click");
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.expect("text")
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.wait(css).await;
        el.clear().await.expect("clear");
        el.send_keys(text).await.expect("type");
    }

    /// Key presses sent to whatever has focus, like a keyboard.
    pub async fn keys(&self, keys: &[char]) {
        let mut actions = KeyActions::new("keyboard".into());
        for &k in keys {
            actions = actions
                .then(KeyAction::Down { value: k })
                .then(KeyAction::Up { value: k });
        }
        self.client.perform_actions(actions).await.expect("keys");
    }

    pub async fn press(&self, key: Key) {
        self.keys(&[key.into()]).await;
    }

    pub async fn type_text(&self, text: &str) {
        let chars: Vec<char> = text.chars().collect();
        self.keys(&chars).await;
    }

    pub async fn shift_tab(&self) {
        let shift: char = Key::Shift.into();
        let tab: char = Key::Tab.into();
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: shift })
            .then(KeyAction::Down { value: tab })
            .then(KeyAction::Up { value: tab })
            .then(KeyAction::Up { value: shift });
        self.client.perform_actions(actions).await.expect("keys");
    }

    pub async fn focused(&self) -> String {
        self.js_str("document.activeElement && (document.activeElement.id || document.activeElement.tagName)")
            .await
    }

    pub async fn shot(&self, state: &str) {
        let Ok(png) = self.client.screenshot().await else {
            return;
        };
        let dir = screenshot_dir();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(format!("{}-{state}.png", self.name)), png);
    }

    pub async fn sign_in(&self, user: &str) {
        self.fill("#signin-username", user).await;
        self.fill("#signin-password", &format!("{user}-password"))
            .await;
        self.click("#signin-submit").await;
        self.wait(".avatar").await;
    }

    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = client.close().await;
        self.session = None;
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        // A test that panicked never reached `close`: end the browser
        // session (chromedriver quits Chromium), then chromedriver itself.
        if let Some(session) = self.session.take() {
            use std::io::Write;
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.driver_port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let mut buf = [0u8; 256];
                let _ = std::io::Read::read(&mut s, &mut buf);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

//! Headless Chromium (Debian's `chromium`) driven through the DevTools protocol: JSON
//! commands over a WebSocket to the browser, attached to its page in flat mode. Enough for
//! UI tests: navigate, wait for a condition in the page, read values, press keys, type,
//! take screenshots. The WebSocket client is the few lines a test needs (client frames
//! masked, text frames, fragmented messages), so no dependency is added for it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use credwarden_core::encoding::Base64;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

/// The browser binary: `$CHROMIUM` or Debian's `chromium`.
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// A minimal WebSocket client (RFC 6455) over one TCP connection.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn connect(url: &str) -> std::io::Result<WebSocket> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| std::io::Error::other("not a ws:// URL"))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut nonce = [0u8; 16];
        SystemRandom::new().fill(&mut nonce).unwrap();
        let key = Base64::Standard.encode(&nonce);
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        // The answer's headers, byte by byte so that no frame is read into a buffer.
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut b)?;
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let accept = {
            let d = ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
            );
            Base64::Standard.encode(d.as_ref()).to_lowercase()
        };
        if !head.starts_with("http/1.1 101") || !head.contains(&accept) {
            return Err(std::io::Error::other(format!(
                "no WebSocket upgrade: {head}"
            )));
        }
        Ok(WebSocket { stream })
    }

    fn send(&mut self, text: &str) -> std::io::Result<()> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        let mut mask = [0u8; 4];
        SystemRandom::new().fill(&mut mask).unwrap();
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)
    }

    /// The next whole text message (pings answered, fragments joined).
    fn recv(&mut self) -> std::io::Result<String> {
        let mut message = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.stream.read_exact(&mut h)?;
            let (fin, opcode) = (h[0] & 0x80 != 0, h[0] & 0x0f);
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    self.stream.read_exact(&mut l)?;
                    u64::from(u16::from_be_bytes(l))
                }
                127 => {
                    let mut l = [0u8; 8];
                    self.stream.read_exact(&mut l)?;
                    u64::from_be_bytes(l)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload)?;
            match opcode {
                0x8 => return Err(std::io::Error::other("the browser closed the socket")),
                0x9 => {
                    // Ping: answer with a pong carrying the same data (masked, as a client).
                    let mut mask = [0u8; 4];
                    SystemRandom::new().fill(&mut mask).unwrap();
                    let mut f = vec![0x8a, 0x80 | payload.len() as u8];
                    f.extend(mask);
                    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
                    self.stream.write_all(&f)?;
                }
                0xa => {}
                _ => {
                    message.extend(payload);
                    if fin {
                        return String::from_utf8(message)
                            .map_err(|_| std::io::Error::other("a message is not UTF-8"));
                    }
                }
            }
        }
    }
}

/// A running headless Chromium with one page attached; killed when dropped.
pub struct Chromium {
    child: Child,
    ws: WebSocket,
    session: String,
    next_id: u64,
}

impl Chromium {
    /// Start the browser with its profile in `profile` (a test's temporary directory), a
    /// `width`×`height` window, and attach to its page.
    pub fn start(profile: &Path, width: u32, height: u32) -> Chromium {
        let mut child = Command::new(binary())
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.display()),
                // Tests run as root in containers, where the sandbox cannot start.
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                // Loopback only: no proxy from the environment in between.
                "--no-proxy-server",
                "--hide-scrollbars",
                &format!("--window-size={width},{height}"),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts (apt-get install chromium)");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut said = String::new();
        let url = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("chromium ended before it listened: {said}");
            }
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_owned();
            }
            said.push_str(&line);
        };
        // Keep reading its stderr so that the browser never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stderr.read_to_end(&mut sink);
        });
        let ws = WebSocket::connect(&url).expect("the DevTools socket");
        let mut c = Chromium {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let targets = c.browser_call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["targetId"].as_str())
            .expect("a page target")
            .to_owned();
        let attached = c.browser_call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
        );
        c.session = attached["sessionId"].as_str().unwrap().to_owned();
        c.call("Page.enable", json!({}));
        c.call("Runtime.enable", json!({}));
        c
    }

    fn send(&mut self, session: Option<String>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(&msg.to_string()).expect("send to chromium");
        loop {
            let text = self.ws.recv().expect("an answer from chromium");
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
            // Events are not needed: conditions are polled in the page.
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params)
    }

    /// A DevTools command to the page; its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(Some(s), method, params)
    }

    /// Go to `url` (the wait for what it shows is the caller's, with [`Chromium::wait_for`]).
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
    }

    /// The value of a JavaScript expression in the page (DevTools evaluation is not page
    /// script, so the pages' `default-src 'self'` does not stop it).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Wait until `condition` (a JavaScript expression) is true in a loaded page; panics
    /// with the page's URL and text after `seconds`.
    pub fn wait_for(&mut self, condition: &str, seconds: u64) {
        let until = Instant::now() + Duration::from_secs(seconds);
        let expr = format!("document.readyState === 'complete' && !!({condition})");
        while Instant::now() < until {
            if self.eval(&expr) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let at =
            self.eval("location.href + '\\n' + (document.body ? document.body.innerText : '')");
        panic!("waited {seconds}s for {condition}; the page: {at}");
    }

    /// The page's URL.
    pub fn url(&mut self) -> String {
        self.eval("location.href").as_str().unwrap_or("").to_owned()
    }

    /// The page's visible text.
    pub fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Press a key: `Tab`, `Enter`, `Space`… (a key down and up, as a keyboard does).
    pub fn press(&mut self, key: &str) {
        let (code, vk, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            "Space" => ("Space", 32, " "),
            other => panic!("no key {other} in this driver"),
        };
        let key_name = if key == "Space" { " " } else { key };
        let kind = if text.is_empty() {
            "rawKeyDown"
        } else {
            "keyDown"
        };
        let mut down = json!({"type": kind, "key": key_name, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk});
        if !text.is_empty() {
            down["text"] = text.into();
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key_name, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}),
        );
    }

    /// Type text into the focused element, as an input method does.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// The `id` (or tag name, when it has none) of the focused element.
    pub fn focused(&mut self) -> String {
        self.eval("(document.activeElement.id || document.activeElement.tagName.toLowerCase())")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// A PNG of the page as shown, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = Base64::Standard
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

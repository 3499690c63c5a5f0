//! Who may use the HTTP API, decided before any handler runs.
//!
//! The rules (`README.md`, "Operating the agent"):
//!
//! - **Changes need the token.** Every method other than `GET`, `HEAD` and
//!   `OPTIONS` must carry `Authorization: Bearer <token>`. An agent started
//!   without a token refuses every change over HTTP (signals and the config
//!   file still work), so a process that can only reach the port cannot make
//!   the node leave, rewrite its tags or reload its keys.
//! - **Off loopback, everything needs the token**, reads included: the member
//!   table and the event stream say where every node listens.
//! - **No cross-site requests.** A browser lets any web page send a "simple"
//!   request (a form body, `text/plain`) to any address without asking first,
//!   and sends it with the page's `Origin`. A change is refused when its
//!   `Origin` is not this agent's own, when the browser says the request is
//!   cross-site (`Sec-Fetch-Site`), or when its body is not JSON. On a loopback
//!   listener the `Host` must name loopback too, so a page whose DNS name
//!   rebinds to 127.0.0.1 is refused even for reads.
//!
//! The token comes from a file (`--http-token-file`) or from the environment
//! (`BEETHOVEN_HTTP_TOKEN`), never from a flag's value, which any user of the
//! host can read in the process list.

use std::fmt;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, Method, header};

/// The environment variable that may hold the token itself.
pub(crate) const TOKEN_ENV: &str = "BEETHOVEN_HTTP_TOKEN";

/// Shortest token accepted: anything shorter is guessable over a network.
pub(crate) const MIN_TOKEN_LEN: usize = 16;

/// The API's shared secret. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("cannot read the HTTP token file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("the HTTP token file {} is empty: put one token (at least {MIN_TOKEN_LEN} characters) on its first line", path.display())]
    EmptyFile { path: PathBuf },
    #[error("{TOKEN_ENV} is set but empty")]
    EmptyEnv,
    #[error(
        "the HTTP token from {source_name} is {len} characters: use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)"
    )]
    TooShort { source_name: String, len: usize },
    #[error(
        "the HTTP token from {source_name} holds a character that cannot travel in a header (only visible ASCII)"
    )]
    NotHeaderSafe { source_name: String },
}

/// A token read from a file, and whether the file's permissions let other
/// users of the host read it (worth a warning, not a refusal).
#[derive(Debug)]
pub(crate) struct LoadedToken {
    pub(crate) token: Token,
    pub(crate) world_readable: bool,
}

impl Token {
    /// A token given as text (`source_name` says where from, for errors).
    pub(crate) fn parse(text: &str, source_name: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        if !text.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(TokenError::NotHeaderSafe {
                source_name: source_name.to_owned(),
            });
        }
        if text.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort {
                source_name: source_name.to_owned(),
                len: text.len(),
            });
        }
        Ok(Token(text.to_owned()))
    }

    /// The token in the first non-empty line of `path`.
    pub(crate) fn read(path: &Path) -> Result<LoadedToken, TokenError> {
        let text = fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        let Some(line) = text.lines().map(str::trim).find(|line| !line.is_empty()) else {
            return Err(TokenError::EmptyFile {
                path: path.to_owned(),
            });
        };
        let token = Token::parse(line, &path.display().to_string())?;
        Ok(LoadedToken {
            token,
            world_readable: world_readable(path),
        })
    }

    /// The token from `BEETHOVEN_HTTP_TOKEN`'s value, if it is set.
    pub(crate) fn from_env_value(value: Option<String>) -> Result<Option<Self>, TokenError> {
        match value {
            None => Ok(None),
            Some(value) if value.trim().is_empty() => Err(TokenError::EmptyEnv),
            Some(value) => Token::parse(&value, TOKEN_ENV).map(Some),
        }
    }

    /// The header value a client sends.
    pub(crate) fn bearer(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether `given` is this token, in time that does not depend on where
    /// the two first differ (so the token cannot be guessed byte by byte).
    fn matches(&self, given: &str) -> bool {
        let (ours, theirs) = (self.0.as_bytes(), given.as_bytes());
        let mut difference = ours.len() ^ theirs.len();
        for (index, byte) in ours.iter().enumerate() {
            let other = theirs.get(index).copied().unwrap_or(0);
            difference |= usize::from(byte ^ other);
        }
        difference == 0
    }
}

#[cfg(unix)]
fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o004 != 0)
}

#[cfg(not(unix))]
fn world_readable(_path: &Path) -> bool {
    false
}

/// Why a request was refused. The `Display` is the answer's error text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// A change, and the agent has no token: changes over HTTP are off.
    #[error(
        "changes over HTTP need a token: start the agent with --http-token-file FILE (or {TOKEN_ENV}) and send `Authorization: Bearer <token>`"
    )]
    ChangesOff,
    /// No `Authorization: Bearer` header.
    #[error("this request needs the agent's token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// A token that is not the agent's.
    #[error("wrong token")]
    WrongToken,
    /// A loopback listener asked for another host (DNS rebinding).
    #[error(
        "Host `{0}` is not this agent's: on a loopback listener use localhost, 127.0.0.1 or [::1]"
    )]
    ForeignHost(String),
    /// A change from another site's page.
    #[error("cross-site request refused (Origin `{0}`)")]
    CrossSite(String),
    /// A change whose body is not JSON (a browser sends forms and text
    /// across sites without asking).
    #[error("a change's body must be JSON (Content-Type: application/json), not `{0}`")]
    NotJson(String),
}

impl Refusal {
    /// 401 when a token would help, 403 otherwise.
    pub(crate) fn is_unauthorized(&self) -> bool {
        matches!(self, Refusal::MissingToken | Refusal::WrongToken)
    }
}

/// The API's door: the token, if any, and where the listener is.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    token: Option<Token>,
    loopback: bool,
}

impl Guard {
    /// The guard of a listener at `listen`.
    pub(crate) fn new(token: Option<Token>, listen: SocketAddr) -> Self {
        Self {
            token,
            loopback: listen.ip().is_loopback(),
        }
    }

    /// Whether the listener is on loopback.
    pub(crate) fn is_loopback(&self) -> bool {
        self.loopback
    }

    /// Whether a token is configured.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Lets the request through, or says why not.
    pub(crate) fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let change = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if self.loopback
            && let Some(host) = header_text(headers, header::HOST)
            && !is_loopback_host(host)
        {
            return Err(Refusal::ForeignHost(host.to_owned()));
        }
        if change {
            check_same_site(headers)?;
            check_json_body(headers)?;
        }
        if change || !self.loopback {
            let Some(token) = &self.token else {
                // Reads off loopback without a token are refused at start
                // unless the operator allowed it explicitly.
                return if change {
                    Err(Refusal::ChangesOff)
                } else {
                    Ok(())
                };
            };
            let given = header_text(headers, header::AUTHORIZATION)
                .and_then(|value| value.strip_prefix("Bearer "))
                .ok_or(Refusal::MissingToken)?;
            if !token.matches(given.trim()) {
                return Err(Refusal::WrongToken);
            }
        }
        Ok(())
    }
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// `localhost`, `127.0.0.1`, `[::1]`, ... with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A change must come from no page at all (a CLI, a script) or from this
/// agent's own page.
fn check_same_site(headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = header_text(headers, header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        let origin = header_text(headers, header::ORIGIN).unwrap_or(site);
        return Err(Refusal::CrossSite(origin.to_owned()));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("<not text>");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let host = header_text(headers, header::HOST);
    match (authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(Refusal::CrossSite(origin.to_owned())),
    }
}

/// A change carries JSON or nothing.
fn check_json_body(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(kind) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let kind = kind.to_str().unwrap_or("<not text>");
    let essence = kind.split(';').next().unwrap_or(kind).trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Refusal::NotJson(kind.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123";

    fn guard(token: bool, listen: &str) -> Guard {
        let token = token.then(|| Token::parse(SECRET, "test").expect("a 20-character token"));
        Guard::new(token, listen.parse().expect("a socket address"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("a header value"));
        }
        map
    }

    fn bearer() -> String {
        format!("Bearer {SECRET}")
    }

    #[test]
    fn reads_on_loopback_need_no_token() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[("host", "127.0.0.1:7947")]);
        assert_eq!(guard.check(&Method::GET, &request), Ok(()));
    }

    #[test]
    fn a_change_without_a_token_is_refused_with_401() {
        let guard = guard(true, "127.0.0.1:7947");
        let refusal = guard
            .check(&Method::POST, &headers(&[("host", "localhost:7947")]))
            .expect_err("no token");
        assert_eq!(refusal, Refusal::MissingToken);
        assert!(refusal.is_unauthorized());
    }

    #[test]
    fn a_change_with_a_wrong_token_is_refused() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[("authorization", "Bearer 0123456789abcdef0124")]);
        assert_eq!(
            guard.check(&Method::PUT, &request),
            Err(Refusal::WrongToken)
        );
        let shorter = headers(&[("authorization", "Bearer 0123456789abcdef012")]);
        assert_eq!(
            guard.check(&Method::PUT, &shorter),
            Err(Refusal::WrongToken)
        );
    }

    #[test]
    fn a_change_with_the_token_passes() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[
            ("authorization", &bearer()),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        assert_eq!(guard.check(&Method::PUT, &request), Ok(()));
    }

    #[test]
    fn without_a_token_changes_are_off_and_reads_work() {
        let guard = guard(false, "127.0.0.1:7947");
        assert_eq!(
            guard.check(&Method::POST, &HeaderMap::new()),
            Err(Refusal::ChangesOff)
        );
        assert_eq!(guard.check(&Method::GET, &HeaderMap::new()), Ok(()));
    }

    #[test]
    fn off_loopback_every_request_needs_the_token() {
        let guard = guard(true, "0.0.0.0:7947");
        assert_eq!(
            guard.check(&Method::GET, &headers(&[("host", "10.0.0.7:7947")])),
            Err(Refusal::MissingToken)
        );
        let request = headers(&[("host", "10.0.0.7:7947"), ("authorization", &bearer())]);
        assert_eq!(guard.check(&Method::GET, &request), Ok(()));
    }

    #[test]
    fn a_text_plain_post_from_another_site_is_refused_even_with_the_token() {
        // What a web page can send to 127.0.0.1 without a preflight.
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[
            ("host", "127.0.0.1:7947"),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
            ("authorization", &bearer()),
        ]);
        assert_eq!(
            guard.check(&Method::POST, &request),
            Err(Refusal::CrossSite("http://evil.example".into()))
        );
    }

    #[test]
    fn a_form_body_is_refused() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &bearer()),
        ]);
        assert_eq!(
            guard.check(&Method::POST, &request),
            Err(Refusal::NotJson("application/x-www-form-urlencoded".into()))
        );
    }

    #[test]
    fn the_agents_own_page_may_change_with_the_token() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[
            ("host", "127.0.0.1:7947"),
            ("origin", "http://127.0.0.1:7947"),
            ("sec-fetch-site", "same-origin"),
            ("authorization", &bearer()),
        ]);
        assert_eq!(guard.check(&Method::POST, &request), Ok(()));
    }

    #[test]
    fn a_browser_saying_cross_site_is_refused_without_an_origin() {
        let guard = guard(true, "127.0.0.1:7947");
        let request = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("authorization", &bearer()),
        ]);
        assert!(matches!(
            guard.check(&Method::POST, &request),
            Err(Refusal::CrossSite(_))
        ));
    }

    #[test]
    fn a_rebinding_host_is_refused_on_loopback_even_for_reads() {
        let guard = guard(false, "127.0.0.1:7947");
        let request = headers(&[("host", "attacker.example:7947")]);
        assert_eq!(
            guard.check(&Method::GET, &request),
            Err(Refusal::ForeignHost("attacker.example:7947".into()))
        );
        for host in ["localhost", "LOCALHOST:1", "[::1]:7947", "127.0.0.2:80"] {
            assert_eq!(
                guard.check(&Method::GET, &headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
    }

    #[test]
    fn tokens_that_are_short_or_not_header_safe_are_refused() {
        assert!(matches!(
            Token::parse("short", "test"),
            Err(TokenError::TooShort { len: 5, .. })
        ));
        assert!(matches!(
            Token::parse("0123456789 abcdef0123", "test"),
            Err(TokenError::NotHeaderSafe { .. })
        ));
        assert!(matches!(
            Token::from_env_value(Some("  ".into())),
            Err(TokenError::EmptyEnv)
        ));
        assert!(
            Token::from_env_value(None)
                .expect("unset is fine")
                .is_none()
        );
    }

    #[test]
    fn a_token_file_gives_its_first_line_and_says_if_others_can_read_it() {
        let dir = std::env::temp_dir().join(format!("beethoven-auth-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join("token");
        fs::write(&path, format!("\n{SECRET}\nignored\n")).expect("write the token file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            assert!(!Token::read(&path).expect("a good file").world_readable);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let loaded = Token::read(&path).expect("a good file");
        assert!(loaded.token.matches(SECRET));
        #[cfg(unix)]
        assert!(loaded.world_readable);
        assert_eq!(format!("{:?}", loaded.token), "Token(<redacted>)");

        fs::write(&path, "\n  \n").expect("write");
        assert!(matches!(
            Token::read(&path),
            Err(TokenError::EmptyFile { .. })
        ));
        assert!(matches!(
            Token::read(&dir.join("missing")),
            Err(TokenError::Read { .. })
        ));
        fs::remove_dir_all(&dir).expect("clean up");
    }
}

//! The web console's server side, through the router without a socket: the page and its
//! assets with their security headers, the headers on API responses, the views the console
//! adds (policy, audit verification, timelines) and the roles on them. The browser test of
//! the console itself is `tests/console.rs` at the root of the workspace.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dispatcher::Dispatcher;
use dispatcher::config::Config;
use dispatcher::console::{API_CSP, CONSOLE_CSP};
use dispatcher::operators::{OperatorRole, Operators};
use serde_json::Value;
use tower::ServiceExt as _;

struct Fixture {
    _dir: tempfile::TempDir,
    d: Arc<Dispatcher>,
    admin: String,
    viewer: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("d");
    let rep = dispatcher::init::init(&root, &dispatcher::init::InitOptions::default()).unwrap();
    let ops_file = root.join("operators.json");
    let mut ops = Operators::load(&ops_file).unwrap();
    let viewer = ops.add("victor", OperatorRole::Viewer).unwrap();
    ops.save(&ops_file).unwrap();
    let cfg = Config::load(&rep.config).unwrap();
    let d = Arc::new(Dispatcher::open(cfg, false).unwrap());
    Fixture {
        _dir: dir,
        d,
        admin: rep.admin_token,
        viewer,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

async fn call(d: &Arc<Dispatcher>, method: &str, path: &str, token: Option<&str>) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = if method == "POST" {
        req = req.header(header::CONTENT_TYPE, "application/json");
        Body::from(r#"{"reason":"looks fine"}"#)
    } else {
        Body::empty()
    };
    let res = dispatcher::api::router(d.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn console_assets_are_served_with_a_strict_policy() {
    let f = fixture();
    for (path, ctype) in [
        ("/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let r = call(&f.d, "GET", path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header(header::CONTENT_TYPE), ctype, "{path}");
        assert_eq!(r.header(header::CONTENT_SECURITY_POLICY), CONSOLE_CSP);
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(r.header(header::REFERRER_POLICY), "no-referrer");
        assert_eq!(r.header(header::CACHE_CONTROL), "no-store");
    }
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'none'",
        "base-uri 'none'",
    ] {
        assert!(CONSOLE_CSP.contains(directive), "{directive}");
    }
    assert!(!CONSOLE_CSP.contains("unsafe"), "{CONSOLE_CSP}");
}

/// The page must work under its own policy: no inline script or style, and the script never
/// turns data into HTML (the XSS rule). A change that breaks either fails here before the
/// browser test runs.
#[tokio::test]
async fn console_markup_and_script_keep_the_xss_rules() {
    let f = fixture();
    let html = call(&f.d, "GET", "/", None).await.text();
    let lower = html.to_ascii_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag_end = lower[i..].find('>').unwrap() + i;
        assert!(
            lower[i..tag_end].contains("src=\"/console/"),
            "inline script in index.html"
        );
        assert!(
            lower[tag_end..].starts_with("></script>"),
            "script with a body"
        );
    }
    assert!(!lower.contains(" style="), "inline style attribute");
    assert!(!lower.contains("<style"), "inline style element");
    assert!(!lower.contains(" onclick=") && !lower.contains(" onload="));
    let js = call(&f.d, "GET", "/console/app.js", None).await.text();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage",
        "document.cookie",
        ".style.",
    ] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
    assert!(js.contains("sessionStorage"));
}

#[tokio::test]
async fn api_responses_carry_security_headers_and_roles_hold() {
    let f = fixture();
    // Refused, unknown route, and success: every response has the headers.
    for (path, token, status) in [
        ("/v1/status", None, StatusCode::UNAUTHORIZED),
        ("/v1/nothing", None, StatusCode::NOT_FOUND),
        ("/v1/status", Some(f.viewer.as_str()), StatusCode::OK),
    ] {
        let r = call(&f.d, "GET", path, token).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header(header::CONTENT_SECURITY_POLICY), API_CSP);
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(r.header(header::X_FRAME_OPTIONS), "DENY");
        assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
    let me = call(&f.d, "GET", "/v1/status", Some(&f.viewer))
        .await
        .json();
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["operator"], "victor");
    assert_eq!(me["checkin_interval_secs"], 60);
    // The views the console adds are readable by a viewer...
    for path in ["/v1/policy", "/v1/audit/verify"] {
        let r = call(&f.d, "GET", path, Some(&f.viewer)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let r = call(&f.d, "GET", path, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // ...but decisions are not theirs, whatever the console shows.
    for path in [
        "/v1/releases/abc/approve",
        "/v1/releases/abc/reject",
        "/v1/rollouts/r1/pause",
        "/v1/rollouts/r1/abort",
    ] {
        let r = call(&f.d, "POST", path, Some(&f.viewer)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = call(&f.d, "POST", "/v1/releases/abc/approve", Some(&f.admin)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&f.d, "GET", "/v1/rollouts/r9/timeline", Some(&f.viewer)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn policy_view_offers_the_rollouts_and_windows_in_force() {
    let f = fixture();
    let p = call(&f.d, "GET", "/v1/policy", Some(&f.viewer))
        .await
        .json();
    let names: Vec<&str> = p["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["canary-then-all", "careful"]);
    let fw = p["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "firmware needs approval")
        .unwrap();
    assert_eq!(fw["action"], "hold");
    assert_eq!(fw["window"], "weekend-night");
    assert_eq!(p["default"]["action"], "hold");
    let w = &p["windows"][0];
    assert_eq!(w["name"], "weekend-night");
    assert!(w["open_now"].is_boolean());
    assert!(p.get("source").is_none(), "the policy's path is not shown");
}

#[tokio::test]
async fn audit_verification_reports_an_edited_record() {
    let f = fixture();
    for i in 0..4 {
        f.d.audit(
            "alice",
            "release.approve",
            Some("rel"),
            "ok",
            Some(&format!("r{i}")),
        )
        .unwrap();
    }
    let v = call(&f.d, "GET", "/v1/audit/verify", Some(&f.viewer))
        .await
        .json();
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["records"], 4);
    // Someone with write access to the database changes a reason.
    let tree = f.d.audit_log().tree();
    let key = 2u64.to_be_bytes();
    let old = tree.get(key).unwrap().unwrap().to_vec();
    let forged = String::from_utf8_lossy(&old[32..]).replace("\"r2\"", "\"ok\"");
    let mut value = old[..32].to_vec();
    value.extend_from_slice(forged.as_bytes());
    tree.insert(key, value).unwrap();
    let r = call(&f.d, "GET", "/v1/audit/verify", Some(&f.viewer)).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(v["records"], 4);
    assert!(v["error"].as_str().unwrap().contains("record 2"), "{v}");
}

/// The install timeline is drawn from report times, so a device must not be able to set
/// them: the dispatcher stamps every report with its own clock.
#[tokio::test]
async fn device_reports_are_timed_by_the_dispatcher() {
    let f = fixture();
    let claimed = chrono::DateTime::parse_from_rfc3339("2001-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let rep = dispatcher::store::DeviceReport {
        release_id: Some("rel".into()),
        outcome: "installed".into(),
        check: None,
        message: String::new(),
        version_before: "1.0.0".into(),
        version_after: "2.0.0".into(),
        received_at: Some(claimed),
    };
    // A device that is not enrolled: refused, nothing stored.
    assert!(matches!(
        f.d.device_report("plc-1", &rep),
        Err(dispatcher::error::Error::NotFound(_))
    ));
    assert!(f.d.store().reports("plc-1").unwrap().is_empty());
    f.d.store()
        .put_device(
            &dispatcher::store::DeviceRecord {
                id: "plc-1".into(),
                device_id: uuid::Uuid::from_u128(1),
                vendor_id: uuid::Uuid::from_u128(2),
                class_id: uuid::Uuid::from_u128(3),
                group: None,
                labels: vec![],
                uplink_kid: "01".into(),
                address: None,
                version: "1.0.0".into(),
                sequence: 0,
                release_id: None,
                enrolled_at: chrono::Utc::now(),
                last_seen: None,
                last_report: None,
                reports: Default::default(),
            },
            false,
        )
        .unwrap();
    let before = f.d.clock.now();
    f.d.device_report("plc-1", &rep).unwrap();
    let stored = f.d.store().reports("plc-1").unwrap();
    assert_eq!(stored.len(), 1);
    let at = stored[0].received_at.unwrap();
    assert!(at >= before && at <= f.d.clock.now(), "{at}");
    // Reports stored before the field existed still parse.
    let old: dispatcher::store::DeviceReport =
        serde_json::from_str(r#"{"release_id":"rel","outcome":"installed"}"#).unwrap();
    assert_eq!(old.received_at, None);
}

#[tokio::test]
async fn openapi_describes_the_console_routes() {
    let f = fixture();
    let v = call(&f.d, "GET", "/v1/openapi.json", None).await.json();
    for path in [
        "/",
        "/console/app.js",
        "/v1/policy",
        "/v1/audit/verify",
        "/v1/rollouts/{id}/timeline",
    ] {
        assert!(v["paths"].get(path).is_some(), "{path} not in openapi.json");
    }
}

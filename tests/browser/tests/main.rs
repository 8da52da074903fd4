//! The dashboard in headless Chromium: the seed's whole flow against the Jasper simulator, for
//! the REST and the SOAP settings (sign in; switch Jasper on and enter the credentials; a wrong
//! credential reported in words, then the right one; create a device; a bad ICCID shown at its
//! line and pointer; fixed and confirmed; the Extensions section; every operation, each checked
//! in the simulator; the usage chart; the audit log; sign out), and the rest: a viewer sees no
//! action buttons, an expired session goes back to sign-in, a forged cross-site post is refused,
//! a plugin's `<script>` strings render as text, a 375 px window still works.
//!
//! Each test prints "skipped: Chromium not installed" and passes without Chromium, unless `CI`
//! is set. Screenshots go to `target/browser-screenshots` (or `DEVEXT_SCREENSHOT_DIR`).

use std::time::Duration;

use devext_browser_tests::{Browser, PASSWORD, Server, chromium, screenshot};
use devext_jasper_sim::{RunningSim, SimConfig};
use fantoccini::{Client, Locator};

// A bulk job: select, run, follow, download.
mod jobs;

type R = Result<(), Box<dyn std::error::Error>>;

fn css(s: &str) -> Locator<'_> {
    Locator::Css(s)
}

/// The text of the page's `main` ("" while a navigation replaces it).
async fn main_text(c: &Client) -> String {
    match c.find(css("main")).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn fill(c: &Client, selector: &str, text: &str) {
    let e = c
        .find(css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Sets a control's value by script (date inputs, long JSON in a textarea).
async fn set_value(c: &Client, id: &str, value: &str) {
    c.execute(
        "document.getElementById(arguments[0]).value = arguments[1];",
        vec![serde_json::json!(id), serde_json::json!(value)],
    )
    .await
    .unwrap();
}

async fn click(c: &Client, selector: &str) {
    c.find(css(selector))
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks a submit button whose form asks for confirmation (the script's `confirm()`), accepts.
async fn click_confirming(c: &Client, selector: &str) {
    click(c, selector).await;
    for _ in 0..50 {
        if c.accept_alert().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_text(c: &Client, needle: &str) -> String {
    for _ in 0..100 {
        let text = main_text(c).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{needle:?} never appeared in: {}", main_text(c).await)
}

async fn sign_in(c: &Client, base: &str, email: &str) {
    c.goto(&format!("{base}/devices")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/sign-in")
    );
    fill(c, "#email", email).await;
    fill(c, "#password", PASSWORD).await;
    click(c, "form button[type=submit]").await;
    wait_text(c, "Devices").await;
    assert_eq!(c.current_url().await.unwrap().path(), "/devices");
}

/// Switches Jasper on with `api`'s credentials (the secret wrong when `wrong`); saves.
async fn jasper_settings(c: &Client, base: &str, sim: &RunningSim, api: &str, wrong: bool) {
    c.goto(&format!("{base}/settings/extensions"))
        .await
        .unwrap();
    let on = c.find(css("#ext-jasper-enabled")).await.unwrap();
    if on.prop("checked").await.unwrap().as_deref() != Some("true") {
        on.click().await.unwrap();
    }
    c.find(css("#ext-jasper-api"))
        .await
        .unwrap()
        .select_by_value(api)
        .await
        .unwrap();
    fill(c, "#ext-jasper-endpoint", &sim.base_url()).await;
    let creds = sim.credentials().clone();
    fill(c, "#ext-jasper-username", &creds.username).await;
    let bad = |s: &str| {
        if wrong {
            format!("{s}-wrong")
        } else {
            s.to_owned()
        }
    };
    if api == "soap" {
        fill(c, "#ext-jasper-password", &bad(&creds.password)).await;
        fill(c, "#ext-jasper-license-key", &creds.license_key).await;
    } else {
        fill(c, "#ext-jasper-api-key", &bad(&creds.api_key)).await;
    }
    click(c, "#ext-jasper form button[type=submit]").await;
    let text = wait_text(c, "Saved.").await;
    assert!(!text.contains(&creds.api_key) && !text.contains(&creds.password));
    let html = c.source().await.unwrap();
    assert!(
        !html.contains(&creds.api_key) && !html.contains(&creds.password),
        "a secret in the page"
    );
}

/// Runs "Test connection" if the manifest offers it; its notice.
async fn test_connection(c: &Client) -> Option<String> {
    let button = c
        .find(css("#ext-jasper form[action$='/test'] button"))
        .await
        .ok()?;
    button.click().await.unwrap();
    Some(wait_text(c, "Connection test").await)
}

async fn create_device(c: &Client, base: &str, name: &str) -> String {
    c.goto(&format!("{base}/devices")).await.unwrap();
    fill(c, "#new-name", name).await;
    click(c, "form[action='/devices'][method='post'] button").await;
    wait_text(c, "Device created").await;
    c.current_url().await.unwrap().path().to_owned()
}

async fn confirm_config(c: &Client, text: &str) {
    set_value(c, "extensions", text).await;
    click(c, "#device-form button[type=submit]").await;
}

async fn flow(api: &str) -> R {
    let Some((chrome, driver)) = chromium() else {
        return Ok(());
    };
    let sim = devext_jasper_sim::start(SimConfig::default()).await?;
    let server = Server::start(&[]);
    let browser = Browser::start(&chrome, &driver, 1280, 1000).await;
    let c = &browser.client;
    let base = &server.base;

    sign_in(c, base, "admin@example.com").await;
    jasper_settings(c, base, &sim, api, true).await;
    let result = test_connection(c)
        .await
        .expect("Jasper declares a connection check");
    assert!(result.contains("Connection test failed"), "{result}");
    assert!(
        result.contains("is wrong"),
        "the failure in words: {result}"
    );
    let device = create_device(c, base, &format!("tracker {api}")).await;
    // A bad ICCID: the error at its line and pointer, nothing saved.
    confirm_config(c, "{\n  \"jasper\": {\"iccid\": \"8988\"}\n}").await;
    let text = wait_text(c, "Not saved").await;
    assert!(
        text.contains("line 2:") && text.contains("/jasper/iccid"),
        "{text}"
    );
    screenshot(c, &format!("{api}-editor-error")).await;
    // Fixed and confirmed.
    let mut sims = sim.sims();
    sims.sort_by_key(|s| s.status != "activated");
    let target = sims[0].clone();
    confirm_config(
        c,
        &format!("{{\n  \"jasper\": {{\"iccid\": \"{}\"}}\n}}", target.iccid),
    )
    .await;
    wait_text(c, "Changes confirmed").await;
    // The wrong credential, in words, in the Extensions section.
    let text = wait_text(c, "Extensions").await;
    assert!(
        text.contains("rejected the organisation's credentials"),
        "{text}"
    );
    // The right one.
    jasper_settings(c, base, &sim, api, false).await;
    let result = test_connection(c)
        .await
        .expect("Jasper declares a connection check");
    assert!(result.contains("Connection test passed"), "{result}");
    c.goto(&format!("{base}{device}")).await?;
    let text = main_text(c).await;
    assert!(
        text.contains(&target.iccid) && text.contains("Overview"),
        "{text}"
    );
    screenshot(c, &format!("{api}-device")).await;

    // Send SMS.
    fill(c, "#op-jasper-send-sms-message", "hello from the dashboard").await;
    click(c, "#op-jasper-send-sms button[type=submit]").await;
    wait_text(c, "Send SMS: done.").await;
    assert!(
        sim.sms_log()
            .iter()
            .any(|m| m.iccid == target.iccid && m.message == "hello from the dashboard")
    );
    // Change rate plan.
    let plan = sim
        .rate_plans()
        .into_iter()
        .find(|p| p.name != target.rate_plan)
        .unwrap()
        .name;
    fill(c, "#op-jasper-set-rate-plan-rate-plan", &plan).await;
    click(c, "#op-jasper-set-rate-plan button[type=submit]").await;
    wait_text(c, "Change rate plan: done.").await;
    assert_eq!(sim.sim(&target.iccid).unwrap().rate_plan, plan);
    // Usage for a cycle (a view with input).
    let cycle = month_start();
    set_value(c, "op-jasper-usage-cycle-start-date", &cycle).await;
    click(c, "#op-jasper-usage button[type=submit]").await;
    let text = wait_text(c, "Usage for a billing cycle").await;
    assert!(!text.contains("Failed ("), "{text}");
    // Change status (destructive: confirmed), last: a deactivated SIM takes no SMS.
    c.find(css("#op-jasper-set-status-status"))
        .await?
        .select_by_value("deactivated")
        .await?;
    click(c, "#op-jasper-set-status input[name=confirm]").await;
    click_confirming(c, "#op-jasper-set-status button[type=submit]").await;
    wait_text(c, "Change status: done.").await;
    assert_eq!(sim.sim(&target.iccid).unwrap().status, "deactivated");
    c.execute(
        "document.getElementById('extensions-section').scrollIntoView();",
        vec![],
    )
    .await?;
    screenshot(c, &format!("{api}-extensions")).await;
    // The usage chart (usage_history declares one): server-drawn SVG.
    let chart = c.find(css("#view-usage-history svg")).await?;
    let label = chart.attr("aria-label").await?.unwrap_or_default();
    assert!(!label.is_empty(), "the chart is labelled");
    c.execute(
        "document.getElementById('view-usage-history').scrollIntoView();",
        vec![],
    )
    .await?;
    screenshot(c, &format!("{api}-chart")).await;
    // The audit log names the user and each action.
    c.goto(&format!("{base}/audit")).await?;
    let text = main_text(c).await;
    for op in ["set_status", "send_sms", "set_rate_plan"] {
        assert!(text.contains(op), "{op} not in the audit log: {text}");
    }
    assert!(text.contains("user admin@example.com"), "{text}");
    assert!(
        !text.contains("hello from the dashboard"),
        "the SMS text is never audited"
    );
    screenshot(c, &format!("{api}-audit")).await;
    c.goto(&format!("{base}/settings/extensions")).await?;
    screenshot(c, &format!("{api}-settings")).await;
    // Sign out: back to sign-in, and the pages need a session again.
    click(c, "header form[action='/sign-out'] button").await;
    wait_text(c, "Sign in").await;
    c.goto(&format!("{base}{device}")).await?;
    assert!(c.current_url().await?.path().starts_with("/sign-in"));
    browser.client.clone().close().await?;
    sim.shutdown().await;
    Ok(())
}

/// The first day of the current month (UTC), YYYY-MM-DD.
fn month_start() -> String {
    chrono::Utc::now().format("%Y-%m-01").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_flow_with_rest() -> R {
    flow("rest").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_flow_with_soap() -> R {
    flow("soap").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_forgeries_hostile_strings_and_narrow_windows() -> R {
    let Some((chrome, driver)) = chromium() else {
        return Ok(());
    };
    let sim = devext_jasper_sim::start(SimConfig::default()).await?;
    let plugins = devext_test_support::plugin_dir(&["devext-fixture-hostile"]);
    let server = Server::start(&["--plugins", plugins.path().to_str().unwrap()]);
    let browser = Browser::start(&chrome, &driver, 1280, 1000).await;
    let c = &browser.client;
    let base = &server.base;
    sign_in(c, base, "admin@example.com").await;
    jasper_settings(c, base, &sim, "rest", false).await;
    // The hostile plugin's strings are text: no dialog opened, the payload visible as typed.
    let text = main_text(c).await;
    assert!(text.contains("Hostile <script>alert(1)</script>"), "{text}");
    assert!(c.get_alert_text().await.is_err(), "a plugin's script ran");
    let device = create_device(c, base, "narrow one").await;
    let iccid = sim.sims()[0].iccid.clone();
    confirm_config(c, &format!("{{\"jasper\": {{\"iccid\": \"{iccid}\"}}}}")).await;
    wait_text(c, "Changes confirmed").await;
    // A forged cross-site post (another origin on this machine submits to the dashboard with
    // the user's cookie): refused, nothing created.
    let forger = std::net::TcpListener::bind("127.0.0.1:0")?;
    let forger_addr = forger.local_addr()?;
    let page = format!(
        "<!doctype html><form method=post action=\"{base}/devices\"><input name=name value=forged>\
         <input name=csrf value=guess><button id=go>go</button></form>"
    );
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = forger.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    c.goto(&format!("http://{forger_addr}/")).await?;
    click(c, "#go").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = c.find(css("body")).await?.text().await?;
    assert!(
        refused.contains("did not come from this site's own pages"),
        "{refused}"
    );
    c.goto(&format!("{base}/devices")).await?;
    assert!(!main_text(c).await.contains("forged"));
    // 375 px wide: nothing scrolls sideways, the operations are still there.
    c.set_window_size(375, 900).await?;
    c.goto(&format!("{base}{device}")).await?;
    let fits = c
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await?;
    assert_eq!(
        fits,
        serde_json::json!(true),
        "the device page scrolls sideways at 375 px"
    );
    assert!(c.find(css("#op-jasper-send-sms button")).await.is_ok());
    screenshot(c, "narrow-device").await;
    c.set_window_size(1280, 1000).await?;
    // A viewer: the panel, no action buttons.
    click(c, "header form[action='/sign-out'] button").await;
    wait_text(c, "Sign in").await;
    sign_in(c, base, "viewer@example.com").await;
    c.goto(&format!("{base}{device}")).await?;
    let text = wait_text(c, "Overview").await;
    assert!(text.contains(&iccid), "{text}");
    assert!(
        c.find_all(css("form[action*='/run/']")).await?.iter().len() <= 1,
        "only views with input"
    );
    for op in ["set_status", "send_sms", "set_rate_plan"] {
        let found = c
            .find_all(css(&format!("form[action*='/run/jasper/{op}']")))
            .await?;
        assert!(found.is_empty(), "a viewer is offered {op}");
    }
    browser.client.clone().close().await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_goes_back_to_sign_in() -> R {
    let Some((chrome, driver)) = chromium() else {
        return Ok(());
    };
    let server = Server::start(&["--session-idle-secs", "2"]);
    let browser = Browser::start(&chrome, &driver, 1280, 1000).await;
    let c = &browser.client;
    sign_in(c, &server.base, "admin@example.com").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    c.goto(&format!("{}/settings/extensions", server.base))
        .await?;
    let url = c.current_url().await?;
    assert_eq!(url.path(), "/sign-in");
    assert_eq!(url.query(), Some("next=%2Fsettings%2Fextensions"));
    browser.client.clone().close().await?;
    Ok(())
}

/// A second service plugin, loaded as a `.so` the dashboard has never seen (1NCE, against its
/// own simulator): its settings form, Test connection, its device form, its panel with the
/// usage chart, and one action checked in the simulator, with no dashboard change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_plugin_shows_its_forms_panel_chart_and_actions() -> R {
    let Some((chrome, driver)) = chromium() else {
        return Ok(());
    };
    let sim = devext_onence_sim::start(devext_onence_sim::SimConfig::default()).await?;
    let plugins = devext_test_support::plugin_dir(&["devext-onence"]);
    let server = Server::start(&["--plugins", plugins.path().to_str().unwrap()]);
    let browser = Browser::start(&chrome, &driver, 1280, 1000).await;
    let c = &browser.client;
    let base = &server.base;
    sign_in(c, base, "admin@example.com").await;

    // Settings: the form generated from 1NCE's org-config schema.
    c.goto(&format!("{base}/settings/extensions")).await?;
    let text = main_text(c).await;
    assert!(text.contains("1NCE") && text.contains("API user"), "{text}");
    let on = c.find(css("#ext-onence-enabled")).await?;
    if on.prop("checked").await?.as_deref() != Some("true") {
        on.click().await?;
    }
    let (user, password) = sim.credentials();
    fill(c, "#ext-onence-endpoint", &sim.endpoint()).await;
    fill(c, "#ext-onence-username", &user).await;
    fill(c, "#ext-onence-password", &format!("{password}-wrong")).await;
    click(c, "#ext-onence form button[type=submit]").await;
    wait_text(c, "Saved.").await;
    click(c, "#ext-onence form[action$='/test'] button").await;
    let result = wait_text(c, "Connection test").await;
    assert!(result.contains("Connection test failed"), "{result}");
    fill(c, "#ext-onence-password", &password).await;
    click(c, "#ext-onence form button[type=submit]").await;
    wait_text(c, "Saved.").await;
    click(c, "#ext-onence form[action$='/test'] button").await;
    let result = wait_text(c, "Connection test").await;
    assert!(result.contains("Connection test passed"), "{result}");
    assert!(
        !c.source().await?.contains(&password),
        "a secret in the page"
    );

    // A device, configured through 1NCE's device form (the alternative to typing JSON).
    let device = create_device(c, base, "onence tracker").await;
    let iccid = sim.iccids()[0].clone();
    c.execute(
        "document.querySelectorAll('details.devform').forEach(d => d.open = true);",
        vec![],
    )
    .await?;
    let form = c
        .find(css(&format!("form[action='{device}/form/onence']")))
        .await?;
    let field = form.find(css("input[name='f.iccid']")).await?;
    field.send_keys(&iccid).await?;
    form.find(css("button[type=submit]")).await?.click().await?;
    wait_text(c, "Changes confirmed").await;

    // The panel: its overview and its usage chart.
    let text = wait_text(c, "Extensions").await;
    assert!(
        text.contains("1NCE") && text.contains(&iccid[..19]),
        "{text}"
    );
    let chart = c.find(css("#view-usage-history svg")).await?;
    assert!(
        !chart
            .attr("aria-label")
            .await?
            .unwrap_or_default()
            .is_empty(),
        "the chart is labelled"
    );
    // One action, checked in the simulator: disable the SIM.
    c.find(css("#op-onence-set-status-status"))
        .await?
        .select_by_value("Disabled")
        .await?;
    if let Ok(confirm) = c
        .find(css("#op-onence-set-status input[name=confirm]"))
        .await
    {
        confirm.click().await?;
    }
    click_confirming(c, "#op-onence-set-status button[type=submit]").await;
    wait_text(c, "done.").await;
    let stored = sim
        .sim(&iccid[..19])
        .or_else(|| sim.sim(&iccid))
        .expect("the SIM");
    assert_eq!(stored.status, "Disabled");
    c.execute(
        "document.getElementById('extensions-section').scrollIntoView();",
        vec![],
    )
    .await?;
    screenshot(c, "onence-extensions").await;
    browser.client.clone().close().await?;
    sim.shutdown().await;
    Ok(())
}

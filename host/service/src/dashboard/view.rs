//! A view's output rendered from its output schema: titles, units (`x-devext-unit`: bytes as
//! kB/MB/GB, 1000-based; seconds as s/min/h), badges (`x-devext-badge`), dates (`format:
//! date-time` as `<time>`, shown in the viewer's time zone by the script), nested objects as
//! nested lists, arrays of objects as tables.

use maud::{Markup, html};
use serde_json::Value;

/// `n` bytes for people, 1000-based (`1.5 MB`).
pub(super) fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n;
    let mut unit = 0;
    while v.abs() >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v} B")
    } else {
        format!("{} {}", trim(v), UNITS[unit])
    }
}

/// `n` seconds for people (`45 s`, `2.5 min`, `1.2 h`).
pub(super) fn seconds(n: f64) -> String {
    if n.abs() < 60.0 {
        format!("{} s", trim(n))
    } else if n.abs() < 3600.0 {
        format!("{} min", trim(n / 60.0))
    } else {
        format!("{} h", trim(n / 3600.0))
    }
}

/// One decimal at most, none when whole.
fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

/// A scalar value as its property's schema says.
pub(super) fn scalar(value: &Value, prop: &Value) -> Markup {
    let unit = prop["x-devext-unit"].as_str();
    match value {
        Value::Null => html! { span.none { "—" } },
        Value::Bool(b) => html! { (if *b { "Yes" } else { "No" }) },
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            match unit {
                Some("bytes") => html! { span title=(format!("{n} bytes")) { (bytes(f)) } },
                Some("seconds") => html! { span title=(format!("{n} s")) { (seconds(f)) } },
                Some("percent") => html! { (trim(f)) " %" },
                _ => html! { (n) },
            }
        }
        Value::String(s) => {
            if prop["x-devext-badge"] == Value::Bool(true) {
                let class = format!("badge badge-{}", super::form::slug(&s.to_lowercase()));
                html! { span class=(class) { (s) } }
            } else if prop["format"] == "date-time" {
                html! { time datetime=(s) { (s) } }
            } else {
                html! { (s) }
            }
        }
        other => html! { code { (other.to_string()) } },
    }
}

/// The properties of an object in the schema's order, then any the schema does not list.
fn ordered<'a>(
    object: &'a serde_json::Map<String, Value>,
    schema: &'a Value,
) -> Vec<(&'a str, &'a Value)> {
    let mut out: Vec<(&str, &Value)> = Vec::new();
    for (name, _) in super::form::property_order(schema) {
        if let Some((k, v)) = object.get_key_value(name) {
            out.push((k, v));
        }
    }
    for (name, v) in object {
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name, v));
        }
    }
    out
}

/// A whole output (or a part of it) under `schema`. `as_of` at the top is left out (the panel
/// shows it as "as of N s ago").
pub(super) fn render(value: &Value, schema: &Value) -> Markup {
    match value {
        Value::Object(object) => html! {
            dl.view {
                @for (name, v) in ordered(object, schema) {
                    @if name != "as_of" {
                        @let prop = &schema["properties"][name];
                        dt { (prop["title"].as_str().unwrap_or(name)) }
                        dd { (render(v, prop)) }
                    }
                }
            }
        },
        Value::Array(items) => {
            let item_schema = &schema["items"];
            let columns: Vec<String> = match item_schema["properties"].as_object() {
                Some(_) => super::form::property_order(item_schema)
                    .into_iter()
                    .map(|(k, _)| k.to_owned())
                    .collect(),
                None => items
                    .iter()
                    .filter_map(Value::as_object)
                    .flat_map(|o| o.keys().cloned())
                    .fold(Vec::new(), |mut acc, k| {
                        if !acc.contains(&k) {
                            acc.push(k);
                        }
                        acc
                    }),
            };
            if items.iter().all(Value::is_object) && !columns.is_empty() {
                html! {
                    div.table-wrap {
                        table {
                            thead { tr { @for c in &columns {
                                th scope="col" { (item_schema["properties"][c]["title"].as_str().unwrap_or(c)) }
                            } } }
                            tbody { @for item in items { tr { @for c in &columns {
                                td { (render(&item[c.as_str()], &item_schema["properties"][c])) }
                            } } } }
                        }
                    }
                }
            } else if items.is_empty() {
                html! { span.none { "none" } }
            } else {
                html! { ul { @for item in items { li { (render(item, item_schema)) } } } }
            }
        }
        scalar_value => scalar(scalar_value, schema),
    }
}

/// "as of 12 s ago" for a result served from the view cache (its `as_of`), if it has one.
pub(super) fn as_of(value: &Value) -> Option<(String, String)> {
    let at = value["as_of"].as_str()?;
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    let age = (chrono::Utc::now() - t.to_utc()).num_seconds().max(0);
    let ago = if age < 90 {
        format!("{age} s ago")
    } else if age < 5400 {
        format!("{} min ago", age / 60)
    } else {
        format!("{} h ago", age / 3600)
    };
    Some((at.to_owned(), ago))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_read_as_people_read_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1_500_000.0), "1.5 MB");
        assert_eq!(bytes(2_000_000_000.0), "2 GB");
        assert_eq!(seconds(45.0), "45 s");
        assert_eq!(seconds(150.0), "2.5 min");
        assert_eq!(seconds(7200.0), "2 h");
    }

    #[test]
    fn outputs_render_from_their_schema_and_escape_everything() {
        let schema = json!({"properties": {
            "status": {"type": "string", "title": "Status", "x-devext-badge": true},
            "data": {"type": "integer", "title": "Data <i>", "x-devext-unit": "bytes"},
            "at": {"type": "string", "format": "date-time"},
            "as_of": {"type": "string"}
        }});
        let out = json!({"status": "<script>x</script>", "data": 2500, "at": "2026-01-01T00:00:00Z",
                         "as_of": "2026-01-01T00:00:00Z"});
        let html = render(&out, &schema).into_string();
        assert!(html.contains(r#"<span class="badge badge--script-x--script-">&lt;script&gt;x&lt;/script&gt;</span>"#), "{html}");
        assert!(
            html.contains("Data &lt;i&gt;") && html.contains("2.5 kB"),
            "{html}"
        );
        assert!(html.contains(r#"<time datetime="2026-01-01T00:00:00Z">"#));
        assert!(!html.contains("as_of"));
    }
}

//! Server-rendered SVG charts of view outputs that declare `x-devext-chart` (no JavaScript, no
//! dependency): [`render`] draws a view's output from its output schema alone, so any plugin's
//! series gets the same chart.
//!
//! The hint, at the root of the output schema:
//! `{"kind": "bar" | "line", "series": "/cycles", "x": "cycle_start", "y": ["data_bytes", ...]}`:
//! `series` is a JSON pointer to an array of objects in the output, `x` the item field of the x
//! axis, `y` numeric item fields. Each y field's `title` labels it and its `x-devext-unit`
//! (`bytes`, `seconds`, `count`, `percent`) formats its values ([`format_value`]). Fields of one
//! unit share a panel (with a legend when there are several); each unit gets its own panel and
//! axis, so a count is not flattened by a byte total.
//!
//! Every text is escaped ([`escape`]); colours are presentation attributes (no `style`), so the
//! SVG works under a Content-Security-Policy without `unsafe-inline`. The SVG has `role="img"`,
//! an `aria-label`, a `<title>` and a `<desc>` listing every value in words.

use std::fmt::Write as _;

use devext_host::hints::resolve_output_pointer;
use serde_json::Value;

/// Why a chart could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChartError {
    /// The output schema has no `x-devext-chart` at its root.
    NoChart,
    /// The hint is not of the documented shape (the load check warned about it).
    BadHint(String),
    /// The output holds no array at the series' pointer.
    NoSeries {
        /// The pointer.
        pointer: String,
    },
}

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChartError::NoChart => f.write_str("the output schema declares no x-devext-chart"),
            ChartError::BadHint(why) => write!(f, "x-devext-chart is not usable: {why}"),
            ChartError::NoSeries { pointer } => {
                write!(f, "the output has no array at {pointer}")
            }
        }
    }
}

impl std::error::Error for ChartError {}

/// Bars or a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bar,
    Line,
}

/// One y field.
struct Series {
    field: String,
    label: String,
    unit: Option<String>,
    values: Vec<Option<f64>>,
}

const WIDTH: f64 = 560.0;
const PANEL_HEIGHT: f64 = 190.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 44.0;
const BOTTOM: f64 = 40.0;
const TITLE_HEIGHT: f64 = 26.0;
/// Colour-blind-safe colours (Okabe and Ito), by series within a panel.
const COLOURS: &[&str] = &[
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
];
/// Longest x label drawn (the `<desc>` and tooltips have the whole label).
const MAX_LABEL_CHARS: usize = 14;

/// Escapes `text` for an XML text node or a quoted attribute value (`&`, `<`, `>`, `"`, `'`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A number with at most `decimals` decimals, without trailing zeros (`1.5`, `2`, `-0.25`).
fn trim_number(v: f64, decimals: usize) -> String {
    let text = format!("{v:.decimals$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    if text == "-0" { "0".to_owned() } else { text }
}

/// Decimals for a value scaled into `[1, 1000)`: 3 significant digits.
fn decimals_for(v: f64) -> usize {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    }
}

/// A value as a person reads it, in its `x-devext-unit`: bytes 1000-based (`1.5 MB`), seconds
/// as s/min/h (`45 s`, `12.5 min`, `2 h`), `count` and no unit as plain numbers, `percent` with
/// `%`. An unknown unit is written after the number.
pub fn format_value(v: f64, unit: Option<&str>) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    match unit {
        Some("bytes") => {
            const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
            let mut scaled = v;
            let mut i = 0;
            while scaled.abs() >= 1000.0 && i < UNITS.len() - 1 {
                scaled /= 1000.0;
                i += 1;
            }
            let decimals = if i == 0 { 0 } else { decimals_for(scaled) };
            format!("{} {}", trim_number(scaled, decimals), UNITS[i])
        }
        Some("seconds") => {
            let a = v.abs();
            if a < 60.0 {
                format!("{} s", trim_number(v, if a < 10.0 { 1 } else { 0 }))
            } else if a < 3600.0 {
                let m = v / 60.0;
                format!("{} min", trim_number(m, decimals_for(m).min(1)))
            } else {
                let h = v / 3600.0;
                format!("{} h", trim_number(h, decimals_for(h).min(1)))
            }
        }
        Some("percent") => format!("{} %", trim_number(v, decimals_for(v))),
        Some("count") | None => {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                group_thousands(v as i64)
            } else {
                trim_number(v, decimals_for(v).max(2))
            }
        }
        Some(other) => format!("{} {other}", trim_number(v, decimals_for(v))),
    }
}

/// `1234567` as `1,234,567`.
fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// An x value as a label: strings as they are, numbers formatted, anything else as JSON.
fn x_label(v: Option<&Value>, unit: Option<&str>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n
            .as_f64()
            .map_or_else(String::new, |f| format_value(f, unit)),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A "nice" axis from `lo` to `hi` (both including 0): the bounds and the tick step.
fn nice_axis(lo: f64, hi: f64, integer: bool) -> (f64, f64, f64) {
    let lo = lo.min(0.0);
    let hi = hi.max(0.0);
    let span = hi - lo;
    if span <= 0.0 {
        return (0.0, 1.0, if integer { 1.0 } else { 0.25 });
    }
    let raw = span / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalised = raw / magnitude;
    let nice = if normalised <= 1.0 {
        1.0
    } else if normalised <= 2.0 {
        2.0
    } else if normalised <= 2.5 {
        2.5
    } else if normalised <= 5.0 {
        5.0
    } else {
        10.0
    };
    let mut step = nice * magnitude;
    if integer && step < 1.0 {
        step = 1.0;
    }
    let top = (hi / step).ceil() * step;
    let bottom = (lo / step).floor() * step;
    (bottom, top, step)
}

/// Draws the chart that `schema` (a view's output schema) declares, from `output` (the view's
/// result). An empty series gives a chart that says there is no data.
pub fn render(output: &Value, schema: &Value) -> Result<String, ChartError> {
    let hint = schema.get("x-devext-chart").ok_or(ChartError::NoChart)?;
    let bad = |why: &str| ChartError::BadHint(why.to_owned());
    let kind = match hint.get("kind").and_then(Value::as_str) {
        Some("bar") => Kind::Bar,
        Some("line") => Kind::Line,
        _ => return Err(bad("kind must be \"bar\" or \"line\"")),
    };
    let pointer = hint
        .get("series")
        .and_then(Value::as_str)
        .filter(|p| p.is_empty() || p.starts_with('/'))
        .ok_or_else(|| bad("series must be a JSON pointer"))?;
    let x_field = hint
        .get("x")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("x must be a field name"))?;
    let y_fields: Vec<&str> = hint
        .get("y")
        .and_then(Value::as_array)
        .map(|ys| ys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if y_fields.is_empty() {
        return Err(bad("y must list at least one field"));
    }
    let items = output
        .pointer(pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| ChartError::NoSeries {
            pointer: pointer.to_owned(),
        })?;
    let item_props = resolve_output_pointer(schema, pointer)
        .and_then(|s| s.get("items"))
        .and_then(|i| i.get("properties"))
        .and_then(Value::as_object);
    let field_schema = |name: &str| item_props.and_then(|p| p.get(name));
    let unit_of = |name: &str| {
        field_schema(name)
            .and_then(|s| s.get("x-devext-unit"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let title_of = |name: &str| {
        field_schema(name)
            .and_then(|s| s.get("title"))
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_owned()
    };

    let x_unit = unit_of(x_field);
    let labels: Vec<String> = items
        .iter()
        .map(|item| x_label(item.get(x_field), x_unit.as_deref()))
        .collect();
    let series: Vec<Series> = y_fields
        .iter()
        .map(|&field| Series {
            field: field.to_owned(),
            label: title_of(field),
            unit: unit_of(field),
            values: items
                .iter()
                .map(|item| item.get(field).and_then(Value::as_f64))
                .collect(),
        })
        .collect();
    let title = schema
        .get("title")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            series
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });

    // Panels: one per unit, in the order the units first appear.
    let mut panels: Vec<(Option<String>, Vec<&Series>)> = Vec::new();
    for s in &series {
        match panels.iter_mut().find(|(u, _)| *u == s.unit) {
            Some((_, members)) => members.push(s),
            None => panels.push((s.unit.clone(), vec![s])),
        }
    }

    let mut svg = String::new();
    let empty = items.is_empty();
    let height = if empty {
        TITLE_HEIGHT + 60.0
    } else {
        TITLE_HEIGHT + PANEL_HEIGHT * panels.len() as f64
    };
    let t = escape(&title);
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"devext-chart\" role=\"img\" \
         aria-label=\"{t}\" viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\" \
         preserveAspectRatio=\"xMidYMid meet\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = write!(svg, "<title>{t}</title>");
    svg.push_str("<desc>");
    svg.push_str(&escape(&describe(&labels, &series)));
    svg.push_str("</desc>");
    let _ = write!(
        svg,
        "<text x=\"{}\" y=\"18\" font-size=\"14\" font-weight=\"bold\" fill=\"#222\">{t}</text>",
        LEFT - 60.0
    );
    if empty {
        let _ = write!(
            svg,
            "<text class=\"devext-chart-empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" \
             fill=\"#555\">No data</text></svg>",
            WIDTH / 2.0,
            TITLE_HEIGHT + 34.0
        );
        return Ok(svg);
    }
    for (i, (unit, members)) in panels.iter().enumerate() {
        let y0 = TITLE_HEIGHT + PANEL_HEIGHT * i as f64;
        panel(&mut svg, kind, y0, unit.as_deref(), members, &labels);
    }
    svg.push_str("</svg>");
    Ok(svg)
}

/// Every value in words, for the `<desc>`: "Data: 2026-10-01 1.5 MB, 2026-11-01 none; SMS: ...".
fn describe(labels: &[String], series: &[Series]) -> String {
    if labels.is_empty() {
        return "No data.".to_owned();
    }
    series
        .iter()
        .map(|s| {
            let values: Vec<String> = labels
                .iter()
                .zip(&s.values)
                .map(|(l, v)| {
                    let v = v.map_or("none".to_owned(), |v| format_value(v, s.unit.as_deref()));
                    format!("{l} {v}")
                })
                .collect();
            format!("{}: {}", s.label, values.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One panel (one unit): axis, grid, bars or lines, x labels, legend.
fn panel(
    svg: &mut String,
    kind: Kind,
    y0: f64,
    unit: Option<&str>,
    members: &[&Series],
    labels: &[String],
) {
    let plot_top = y0 + TOP;
    let plot_bottom = y0 + PANEL_HEIGHT - BOTTOM;
    let plot_h = plot_bottom - plot_top;
    let plot_w = WIDTH - LEFT - RIGHT;
    let values = members
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied());
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let integer = matches!(unit, Some("count") | Some("bytes"));
    let (bottom, top, step) = nice_axis(lo, hi, integer);
    let y_of = |v: f64| plot_bottom - (v - bottom) / (top - bottom) * plot_h;

    // Panel heading: the series names (and the unit), and a legend when several share it.
    let heading: Vec<&str> = members.iter().map(|s| s.label.as_str()).collect();
    let _ = write!(
        svg,
        "<g class=\"devext-chart-panel\"><text x=\"{}\" y=\"{}\" fill=\"#222\">{}</text>",
        LEFT - 60.0,
        y0 + 18.0,
        escape(&heading.join(", "))
    );
    if members.len() > 1 {
        let mut x = LEFT;
        for (i, s) in members.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let label = shorten(&s.label, 24);
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>\
                 <text x=\"{}\" y=\"{}\" fill=\"#222\">{}</text>",
                y0 + 25.0,
                x + 14.0,
                y0 + 34.0,
                escape(&label)
            );
            x += 24.0 + 7.0 * label.chars().count() as f64;
        }
    }

    // Axis and grid.
    let mut v = bottom;
    let mut guard = 0;
    while v <= top + step / 2.0 && guard < 20 {
        let y = y_of(v);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#444\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&format_value(v, unit))
        );
        v += step;
        guard += 1;
    }
    let _ = write!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{plot_top:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>",
        WIDTH - RIGHT,
        y_of(0.0),
        y_of(0.0)
    );

    // X labels: as many as fit.
    let n = labels.len();
    let slot = plot_w / n as f64;
    let every = ((60.0 / slot).ceil() as usize).max(1);
    for (i, label) in labels.iter().enumerate() {
        if !i.is_multiple_of(every) {
            continue;
        }
        let x = LEFT + slot * (i as f64 + 0.5);
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#444\">{}</text>",
            plot_bottom + 16.0,
            escape(&shorten(label, MAX_LABEL_CHARS))
        );
    }

    // Data.
    let k = members.len() as f64;
    for (si, s) in members.iter().enumerate() {
        let colour = COLOURS[si % COLOURS.len()];
        let class = format!("devext-chart-series series-{si}");
        let _ = write!(
            svg,
            "<g class=\"{class}\" data-field=\"{}\">",
            escape(&s.field)
        );
        let tip = |i: usize, v: f64| {
            escape(&format!(
                "{}: {} {}",
                labels[i],
                s.label,
                format_value(v, unit)
            ))
        };
        match kind {
            Kind::Bar => {
                let bar_w = slot * 0.8 / k;
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let x = LEFT + slot * i as f64 + slot * 0.1 + bar_w * si as f64;
                    let (ya, yb) = (y_of(v), y_of(0.0));
                    let _ = write!(
                        svg,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" \
                         fill=\"{colour}\"><title>{}</title></rect>",
                        ya.min(yb),
                        bar_w.max(1.0),
                        (ya - yb).abs(),
                        tip(i, v)
                    );
                }
            }
            Kind::Line => {
                // Segments break where a value is missing.
                let mut segment = String::new();
                for (i, v) in s.values.iter().enumerate() {
                    let x = LEFT + slot * (i as f64 + 0.5);
                    match v {
                        Some(v) => {
                            let _ = write!(segment, "{x:.1},{:.1} ", y_of(*v));
                        }
                        None => {
                            flush_line(svg, &mut segment, colour);
                        }
                    }
                }
                flush_line(svg, &mut segment, colour);
                for (i, v) in s.values.iter().enumerate() {
                    let Some(v) = *v else { continue };
                    let x = LEFT + slot * (i as f64 + 0.5);
                    let _ = write!(
                        svg,
                        "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{colour}\">\
                         <title>{}</title></circle>",
                        y_of(v),
                        tip(i, v)
                    );
                }
            }
        }
        svg.push_str("</g>");
    }
    svg.push_str("</g>");
}

/// Writes the polyline of the points gathered in `segment` (if any) and empties it.
fn flush_line(svg: &mut String, segment: &mut String, colour: &str) {
    let points = segment.trim_end();
    if !points.is_empty() {
        let _ = write!(
            svg,
            "<polyline points=\"{points}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>"
        );
    }
    segment.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(kind: &str, y: &[&str]) -> Value {
        json!({
            "type": "object",
            "title": "Usage history",
            "x-devext-chart": {"kind": kind, "series": "/cycles", "x": "cycle_start", "y": y},
            "properties": {
                "cycles": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "cycle_start": {"type": "string", "format": "date", "title": "Cycle start"},
                            "data_bytes": {"type": ["integer", "null"], "title": "Data", "x-devext-unit": "bytes"},
                            "sms": {"type": "integer", "title": "SMS", "x-devext-unit": "count"},
                            "mo_sms": {"type": "integer", "title": "SMS sent", "x-devext-unit": "count"},
                            "voice": {"type": "integer", "title": "Voice", "x-devext-unit": "seconds"}
                        }
                    }
                }
            }
        })
    }

    fn output() -> Value {
        json!({"cycles": [
            {"cycle_start": "2026-10-01", "data_bytes": 1_500_000, "sms": 12, "mo_sms": 5, "voice": 90},
            {"cycle_start": "2026-11-01", "data_bytes": null, "sms": 3, "mo_sms": 1, "voice": 7200},
            {"cycle_start": "2026-12-01", "data_bytes": 250_000_000, "sms": 0, "mo_sms": 0, "voice": 30}
        ]})
    }

    /// The SVG is well-formed enough for our needs: every `<` opens a known element or closes
    /// one, and tags balance.
    fn assert_balanced(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unclosed tag") + start;
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "in {svg}");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap().to_owned();
                assert!(
                    ["svg", "title", "desc", "text", "g", "rect", "circle"]
                        .contains(&name.as_str()),
                    "unexpected element {name} in {svg}"
                );
                stack.push(name);
            }
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    #[test]
    fn hostile_titles_and_labels_are_escaped() {
        let mut s = schema("bar", &["data_bytes"]);
        s["title"] = json!("<script>alert(1)</script>");
        s["properties"]["cycles"]["items"]["properties"]["data_bytes"]["title"] =
            json!("\"><img src=x onerror=alert(1)>");
        let out =
            json!({"cycles": [{"cycle_start": "</text><script>x</script>", "data_bytes": 5}]});
        let svg = render(&out, &s).unwrap();
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{svg}"
        );
        assert!(
            svg.contains("aria-label=\"&lt;script&gt;alert(1)&lt;/script&gt;\""),
            "{svg}"
        );
        assert!(
            svg.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "{svg}"
        );
        assert_balanced(&svg);
        assert_eq!(escape("a&b<'\"\u{1}"), "a&amp;b&lt;&#39;&quot;\u{FFFD}");
    }

    #[test]
    fn accessible_names_and_every_value_in_words() {
        let svg = render(&output(), &schema("bar", &["data_bytes", "sms", "voice"])).unwrap();
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{svg}"
        );
        assert!(svg.contains("role=\"img\""));
        assert!(svg.contains("aria-label=\"Usage history\""));
        assert!(svg.contains("<title>Usage history</title>"));
        assert!(
            svg.contains(
                "<desc>Data: 2026-10-01 1.5 MB, 2026-11-01 none, 2026-12-01 250 MB; \
                 SMS: 2026-10-01 12, 2026-11-01 3, 2026-12-01 0; \
                 Voice: 2026-10-01 1.5 min, 2026-11-01 2 h, 2026-12-01 30 s</desc>"
            ),
            "{svg}"
        );
        assert!(
            !svg.contains("style="),
            "presentation attributes only: {svg}"
        );
        assert_balanced(&svg);
    }

    #[test]
    fn each_unit_gets_its_own_panel_and_axis() {
        let svg = render(&output(), &schema("bar", &["data_bytes", "sms", "voice"])).unwrap();
        assert_eq!(
            svg.matches("class=\"devext-chart-panel\"").count(),
            3,
            "{svg}"
        );
        // The byte axis is in MB, the SMS axis in plain counts, the voice axis in time.
        assert!(
            svg.contains(">250 MB</text>") || svg.contains(">300 MB</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(">12</text>") || svg.contains(">15</text>"),
            "{svg}"
        );
        assert!(svg.contains(" h</text>"), "{svg}");
        // Bars: 2 data (one null), 3 SMS, 3 voice.
        assert_eq!(svg.matches("<rect").count(), 8, "{svg}");
        // Tooltips carry the formatted value.
        assert!(
            svg.contains("<title>2026-10-01: Data 1.5 MB</title>"),
            "{svg}"
        );
    }

    #[test]
    fn several_series_of_one_unit_share_a_panel_with_a_legend() {
        let svg = render(&output(), &schema("line", &["sms", "mo_sms"])).unwrap();
        assert_eq!(
            svg.matches("class=\"devext-chart-panel\"").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("class=\"devext-chart-series series-0\" data-field=\"sms\""));
        assert!(svg.contains("class=\"devext-chart-series series-1\" data-field=\"mo_sms\""));
        // Legend: a swatch per series and its name.
        assert!(svg.contains(">SMS sent</text>"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 6, "{svg}");
        assert_balanced(&svg);
    }

    #[test]
    fn a_missing_value_breaks_the_line() {
        let svg = render(&output(), &schema("line", &["data_bytes"])).unwrap();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
    }

    #[test]
    fn an_empty_series_says_no_data() {
        let svg = render(&json!({"cycles": []}), &schema("bar", &["data_bytes"])).unwrap();
        assert!(svg.contains(">No data</text>"), "{svg}");
        assert!(svg.contains("<desc>No data.</desc>"), "{svg}");
        assert!(!svg.contains("<rect"), "{svg}");
        assert_balanced(&svg);
    }

    #[test]
    fn unusable_hints_and_outputs_are_errors() {
        assert_eq!(render(&output(), &json!({})), Err(ChartError::NoChart));
        let mut s = schema("pie", &["sms"]);
        assert!(matches!(render(&output(), &s), Err(ChartError::BadHint(_))));
        s = schema("bar", &[]);
        assert!(matches!(render(&output(), &s), Err(ChartError::BadHint(_))));
        let e = render(&json!({"cycles": 3}), &schema("bar", &["sms"])).unwrap_err();
        assert_eq!(
            e,
            ChartError::NoSeries {
                pointer: "/cycles".into()
            }
        );
        assert_eq!(e.to_string(), "the output has no array at /cycles");
    }

    #[test]
    fn values_are_formatted_in_their_units() {
        assert_eq!(format_value(0.0, Some("bytes")), "0 B");
        assert_eq!(format_value(999.0, Some("bytes")), "999 B");
        assert_eq!(format_value(1000.0, Some("bytes")), "1 kB");
        assert_eq!(format_value(1_234_567.0, Some("bytes")), "1.23 MB");
        assert_eq!(format_value(12_345_678_901.0, Some("bytes")), "12.3 GB");
        assert_eq!(format_value(45.0, Some("seconds")), "45 s");
        assert_eq!(format_value(2.5, Some("seconds")), "2.5 s");
        assert_eq!(format_value(750.0, Some("seconds")), "12.5 min");
        assert_eq!(format_value(7200.0, Some("seconds")), "2 h");
        assert_eq!(format_value(5400.0, Some("seconds")), "1.5 h");
        assert_eq!(format_value(1_234_567.0, Some("count")), "1,234,567");
        assert_eq!(format_value(-1234.0, None), "-1,234");
        assert_eq!(format_value(12.5, Some("percent")), "12.5 %");
        assert_eq!(format_value(0.126, None), "0.13");
        assert_eq!(format_value(3.0, Some("furlongs")), "3 furlongs");
        assert_eq!(format_value(f64::NAN, Some("bytes")), "–");
    }

    #[test]
    fn axes_are_rounded() {
        assert_eq!(nice_axis(0.0, 12.0, true), (0.0, 15.0, 5.0));
        assert_eq!(nice_axis(0.0, 0.0, true), (0.0, 1.0, 1.0));
        assert_eq!(nice_axis(0.0, 3.0, true), (0.0, 3.0, 1.0));
        assert_eq!(nice_axis(-5.0, 10.0, false), (-5.0, 10.0, 5.0));
        let (lo, hi, step) = nice_axis(0.0, 250_000_000.0, true);
        assert_eq!((lo, hi, step), (0.0, 300_000_000.0, 100_000_000.0));
    }
}

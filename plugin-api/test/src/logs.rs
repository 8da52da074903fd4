//! The host's log lines, captured per test thread.

use std::cell::RefCell;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

/// One line the host logged (its own, or a plugin's through the `log` capability).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The plugin the line is about, when the host tagged it.
    pub plugin: Option<String>,
    /// The message.
    pub message: String,
}

thread_local! {
    static LINES: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
}

/// The lines logged on this thread since [`crate::run`] or [`crate::run_paused`] started.
pub fn logs() -> Vec<LogLine> {
    LINES.with(|l| l.borrow().clone())
}

struct Capture;

#[derive(Default)]
struct Fields {
    plugin: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "plugin" => self.plugin = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = LogLine {
            level: event.metadata().level().to_string(),
            plugin: fields.plugin,
            message: fields.message,
        };
        LINES.with(|l| l.borrow_mut().push(line));
    }
}

/// Captures this thread's log lines until the guard is dropped.
pub(crate) fn capture() -> tracing::subscriber::DefaultGuard {
    LINES.with(|l| l.borrow_mut().clear());
    tracing::subscriber::set_default(tracing_subscriber::registry().with(Capture))
}

//! Minimal namespace-aware XML tree reading and event-based writing, both on
//! top of quick-xml. Requests are small (a SOAP envelope), so reading them
//! into a tree keeps the SOAP operations simple and prefix-agnostic.

use std::io;

use quick_xml::XmlVersion;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, Writer};

/// Deepest nesting accepted (SOAP requests are shallow).
const MAX_DEPTH: usize = 64;

/// An element with its resolved namespace; prefixes are forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) ns: Option<String>,
    pub(crate) local: String,
    pub(crate) attrs: Vec<Attr>,
    pub(crate) children: Vec<Element>,
    /// Concatenated character data directly inside this element.
    pub(crate) text: String,
}

/// An attribute with its resolved namespace (unprefixed attributes have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub(crate) ns: Option<String>,
    pub(crate) local: String,
    pub(crate) value: String,
}

impl Element {
    /// Whether the element has this namespace and local name.
    pub(crate) fn is(&self, ns: &str, local: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.local == local
    }

    /// First child with this namespace and local name.
    pub(crate) fn child(&self, ns: &str, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, local))
    }

    /// Value of an attribute by local name, whatever its namespace.
    pub(crate) fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.local == local)
            .map(|a| a.value.as_str())
    }

    /// Text content with surrounding whitespace removed.
    pub(crate) fn trimmed(&self) -> &str {
        self.text.trim()
    }

    /// Qualified-name-like label for messages: `{ns}local`.
    pub(crate) fn label(&self) -> String {
        match &self.ns {
            Some(ns) => format!("{{{ns}}}{}", self.local),
            None => self.local.clone(),
        }
    }
}

fn resolved(r: ResolveResult<'_>) -> Result<Option<String>, String> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(ns.0.to_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(format!("unbound namespace prefix '{prefix}'")),
    }
}

fn open(reader: &NsReader<&[u8]>, start: &BytesStart<'_>) -> Result<Element, String> {
    let (ns, local) = reader.resolver().resolve_element(start.name());
    let mut element = Element {
        ns: resolved(ns)?,
        local: local.as_ref().to_owned(),
        ..Element::default()
    };
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = attr.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(attr.key);
        let ns = resolved(ns)?;
        let local = local.as_ref().to_owned();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?
            .into_owned();
        element.attrs.push(Attr { ns, local, value });
    }
    Ok(element)
}

/// Parses a whole document into its root element.
pub(crate) fn parse_document(input: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(input);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;

    let close = |stack: &mut Vec<Element>, root: &mut Option<Element>, el: Element| {
        match stack.last_mut() {
            Some(parent) => parent.children.push(el),
            None if root.is_none() => *root = Some(el),
            None => return Err("more than one root element".to_owned()),
        }
        Ok(())
    };

    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match event {
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("document nested too deeply".to_owned());
                }
                if root.is_some() && stack.is_empty() {
                    return Err("more than one root element".to_owned());
                }
                stack.push(open(&reader, &start)?);
            }
            Event::Empty(start) => {
                let el = open(&reader, &start)?;
                close(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unexpected closing tag")?;
                close(&mut stack, &mut root, el)?;
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err("text outside the root element".to_owned()),
                }
            }
            Event::CData(cdata) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&cdata.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let ch = reference.resolve_char_ref().map_err(|e| e.to_string())?;
                let el = stack
                    .last_mut()
                    .ok_or("reference outside the root element")?;
                match ch {
                    Some(c) => el.text.push(c),
                    None => {
                        let name = reference.xml10_content();
                        let value = resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity '&{name};'"))?;
                        el.text.push_str(value);
                    }
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".to_owned());
    }
    root.ok_or_else(|| "empty document".to_owned())
}

/// Event-based XML writer with small conveniences.
pub(crate) struct XmlOut {
    writer: Writer<Vec<u8>>,
}

impl XmlOut {
    /// Starts a document with an XML declaration.
    pub(crate) fn new() -> io::Result<Self> {
        let mut writer = Writer::new(Vec::with_capacity(2048));
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        Ok(Self { writer })
    }

    /// Opens an element.
    pub(crate) fn start(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.writer.write_event(Event::Start(start))
    }

    /// Closes an element.
    pub(crate) fn end(&mut self, name: &str) -> io::Result<()> {
        self.writer.write_event(Event::End(BytesEnd::new(name)))
    }

    /// Writes `<name>text</name>` (text escaped).
    pub(crate) fn leaf(&mut self, name: &str, text: &str) -> io::Result<()> {
        self.leaf_with(name, &[], text)
    }

    /// Writes `<name attrs...>text</name>` (text escaped).
    pub(crate) fn leaf_with(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        text: &str,
    ) -> io::Result<()> {
        self.start(name, attrs)?;
        self.writer.write_event(Event::Text(BytesText::new(text)))?;
        self.end(name)
    }

    /// Writes `<name attrs.../>`.
    pub(crate) fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
        let start = BytesStart::new(name).with_attributes(attrs.iter().copied());
        self.writer.write_event(Event::Empty(start))
    }

    /// Writes raw bytes (used only to produce deliberately truncated XML).
    pub(crate) fn raw(&mut self, text: &str) {
        self.writer.get_mut().extend_from_slice(text.as_bytes());
    }

    /// The document bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_resolve_whatever_the_prefix() {
        let doc = r#"<a:Root xmlns:a="urn:x" xmlns="urn:d"><b:c xmlns:b="urn:x" b:k="v" k2="w">1 &amp; 2&#65;<![CDATA[<z>]]></b:c><plain/></a:Root>"#;
        let root = parse_document(doc).unwrap();
        assert!(root.is("urn:x", "Root"));
        let c = root.child("urn:x", "c").unwrap();
        assert_eq!(c.text, "1 & 2A<z>");
        assert_eq!(c.attr("k"), Some("v"));
        assert_eq!(c.attrs[0].ns.as_deref(), Some("urn:x"));
        assert_eq!(c.attrs[1].ns, None);
        assert!(root.child("urn:d", "plain").is_some());
    }

    #[test]
    fn malformed_documents_are_errors() {
        for doc in [
            "",
            "<a>",
            "<a></b>",
            "<p:a/>",
            "<a/><b/>",
            "<a>&bogus;</a>",
            "text",
        ] {
            assert!(parse_document(doc).is_err(), "{doc:?} accepted");
        }
    }

    #[test]
    fn writer_escapes() {
        let mut out = XmlOut::new().unwrap();
        out.start("r", &[("x", "a\"b")]).unwrap();
        out.leaf("t", "<&>").unwrap();
        out.empty("e", &[]).unwrap();
        out.end("r").unwrap();
        let s = String::from_utf8(out.finish()).unwrap();
        assert!(s.contains("<t>&lt;&amp;&gt;</t>"), "{s}");
        assert!(s.contains("x=\"a&quot;b\""), "{s}");
        assert!(parse_document(&s).is_ok());
    }
}

//! A small namespace-aware XML tree, read with quick-xml's `NsReader`.
//!
//! Elements are identified by (namespace URI, local name) whatever the prefixes of the document
//! (`ns2:`, `S:`, a default namespace, ...). Unknown elements are kept and simply never looked at.
//! Bounded: at most [`MAX_DEPTH`] levels, so neither building nor dropping a tree can exhaust the
//! stack whatever the input.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::{NsReader, XmlVersion};

/// The XML Schema instance namespace (`xsi:nil`).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Deepest nesting accepted; SOAP answers need about 8.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: Option<String>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Namespace URI, `None` when the element is in no namespace.
    pub ns: Option<String>,
    /// Local name, without prefix.
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// The element's own text (text and CDATA directly inside it, concatenated).
    pub text: String,
}

impl Element {
    /// Whether the element is `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }

    /// Whether the element has local name `name` and is in namespace `ns` or in none (servers
    /// that do not qualify child elements are tolerated).
    pub fn is_lenient(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref().is_none_or(|n| n == ns)
    }

    /// The first child `{ns}name` (or `name` in no namespace).
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is_lenient(ns, name))
    }

    /// Every child `{ns}name` (or `name` in no namespace).
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is_lenient(ns, name))
    }

    /// The first child element whatever its name.
    pub fn first_child(&self) -> Option<&Element> {
        self.children.first()
    }

    /// The value of attribute `name` in namespace `ns` (`None`: no namespace).
    pub fn attr(&self, ns: Option<&str>, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.name == name && a.ns.as_deref() == ns)
            .map(|a| a.value.as_str())
    }

    /// Whether the element carries `xsi:nil="true"`.
    pub fn is_nil(&self) -> bool {
        matches!(
            self.attr(Some(XSI_NS), "nil").map(str::trim),
            Some("true" | "1")
        )
    }

    /// The trimmed text of child `{ns}name`; `None` when it is absent, nil or empty.
    pub fn child_text(&self, ns: &str, name: &str) -> Option<&str> {
        let child = self.child(ns, name)?;
        if child.is_nil() {
            return None;
        }
        let t = child.text.trim();
        (!t.is_empty()).then_some(t)
    }

    /// All text in the element and its descendants, separated by spaces.
    pub fn deep_text(&self) -> String {
        let mut out = String::new();
        self.collect_text(&mut out);
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn collect_text(&self, out: &mut String) {
        out.push(' ');
        out.push_str(&self.text);
        for c in &self.children {
            c.collect_text(out);
        }
    }
}

fn owned_ns(r: ResolveResult<'_>) -> Result<Option<String>, String> {
    match r {
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Bound(ns) => Ok(Some(ns.0.to_owned())),
        ResolveResult::Unknown(prefix) => Err(format!("undeclared namespace prefix {prefix:?}")),
    }
}

fn element(
    resolver: &NamespaceResolver,
    ns: Option<String>,
    start: &BytesStart<'_>,
) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let (ans, local) = resolver.resolve_attribute(attr.key);
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        attrs.push(Attr {
            ns: owned_ns(ans)?,
            name: local.as_ref().to_owned(),
            value: value.into_owned(),
        });
    }
    Ok(Element {
        ns,
        name: start.local_name().as_ref().to_owned(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Parses a whole document into its root element. Any malformation (truncation, mismatched
/// tags, undeclared prefixes, unknown entities, several roots, stray text) is an error message.
pub fn parse(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (owned_ns(ns), event),
            Err(e) => return Err(format!("malformed XML: {e}")),
        };
        match event {
            Event::Start(start) => {
                let el = element(reader.resolver(), ns?, &start)?;
                if stack.len() >= MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                stack.push(el);
            }
            Event::Empty(start) => {
                let el = element(reader.resolver(), ns?, &start)?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::End(_) => {
                let el = stack.pop().ok_or("unbalanced closing tag")?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content())?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| format!("unknown entity &{};", r.xml10_content()))?
                        .to_owned(),
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("truncated XML (unclosed elements)".into());
    }
    root.ok_or_else(|| "no XML element".into())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), String> {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(el);
        Ok(())
    } else if root.is_none() {
        *root = Some(el);
        Ok(())
    } else {
        Err("several root elements".into())
    }
}

fn push_text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(top) => {
            top.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".into()),
    }
}

/// Whether `s` only has characters XML 1.0 allows (no control characters but tab, CR, LF).
pub fn is_xml_safe(s: &str) -> bool {
    s.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || ('\u{10000}'..='\u{10FFFF}').contains(&c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_matter_namespaces_do() {
        let docs = [
            r#"<a:r xmlns:a="urn:x"><a:v>1</a:v></a:r>"#,
            r#"<r xmlns="urn:x"><v>1</v></r>"#,
            r#"<S:r xmlns:S="urn:x"><v xmlns="urn:x">1</v></S:r>"#,
        ];
        for doc in docs {
            let r = parse(doc).unwrap();
            assert!(r.is("urn:x", "r"), "{doc}");
            assert_eq!(r.child_text("urn:x", "v"), Some("1"), "{doc}");
        }
        let other = parse(r#"<r xmlns="urn:x"><v xmlns="urn:other">1</v></r>"#).unwrap();
        assert_eq!(other.child_text("urn:x", "v"), None);
    }

    #[test]
    fn entities_cdata_and_nil() {
        let r = parse(
            r#"<r xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><t>a &lt;&amp;&gt; &#x41;&#66;<![CDATA[<c>]]></t><n xsi:nil="true"/><e></e><w>  </w></r>"#,
        )
        .unwrap();
        assert_eq!(r.child_text("", "t"), Some("a <&> AB<c>"));
        assert!(r.child("", "n").unwrap().is_nil());
        assert_eq!(r.child_text("", "n"), None);
        assert_eq!(r.child_text("", "e"), None);
        assert_eq!(r.child_text("", "w"), None);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            "",
            "   ",
            "<r><a></r>",
            "<r><a>",
            "<r>",
            "<r/><r/>",
            "text",
            "<x:r/>",
            "<r>&nbsp;</r>",
            "<r a='1' a='2'/>",
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><hr></body></html>",
            "{\"errorCode\":\"1\"}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn xml_safety_of_text() {
        assert!(is_xml_safe("hello <&> é 😀\n"));
        assert!(!is_xml_safe("bell\u{7}"));
        assert!(!is_xml_safe("nul\u{0}"));
        assert!(!is_xml_safe("\u{FFFE}"));
    }
}

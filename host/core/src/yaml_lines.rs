//! Where each node of a YAML document starts, by path (`feature_views[0].source`), so
//! that a problem found after parsing can name its line.

use std::collections::HashMap;

use yaml_rust2::Event;
use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines by path: `project`, `feature_views[0]`, `feature_views[0].features[1].dtype`.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    by_path: HashMap<String, usize>,
}

enum Frame {
    /// A mapping: its path, and the key whose value comes next (none: a key comes next).
    Map { path: String, key: Option<String> },
    /// A sequence: its path and the index of the next item.
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walk {
    stack: Vec<Frame>,
    lines: Lines,
}

fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl MarkedEventReceiver for Walk {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let (scalar, opens) = match &event {
            Event::Scalar(text, ..) => (Some(text.as_str()), None),
            Event::Alias(_) => (None, None),
            Event::MappingStart(..) => (None, Some(true)),
            Event::SequenceStart(..) => (None, Some(false)),
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                return;
            }
            _ => return,
        };
        let path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => child(path, &k),
                None => {
                    // A key: its value is said to be where the key is. A complex
                    // (non-scalar) key has no name, and is walked under a throwaway path.
                    let k = scalar.unwrap_or("?").to_owned();
                    let at = child(path, &k);
                    self.lines.by_path.entry(at).or_insert(mark.line());
                    *key = Some(k);
                    "?".to_owned()
                }
            },
            Some(Frame::Seq { path, next }) => {
                *next += 1;
                format!("{path}[{}]", *next - 1)
            }
        };
        if path != "?" {
            self.lines
                .by_path
                .entry(path.clone())
                .or_insert(mark.line());
        }
        match opens {
            Some(true) => self.stack.push(Frame::Map { path, key: None }),
            Some(false) => self.stack.push(Frame::Seq { path, next: 0 }),
            None => {}
        }
    }
}

impl Lines {
    /// Reads the node positions of `text`; a document that does not parse has none.
    pub(crate) fn of(text: &str) -> Lines {
        let mut walk = Walk::default();
        match Parser::new_from_str(text).load(&mut walk, false) {
            Ok(()) => walk.lines,
            Err(_) => Lines::default(),
        }
    }

    /// The line of `path`, or of its nearest enclosing node that has one.
    pub(crate) fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(&line) = self.by_path.get(path) {
                return Some(line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_flow_nodes_have_their_lines() {
        let lines = Lines::of(
            "project: p\nviews:\n  - name: a\n    features:\n      - {name: x,\n         dtype: int64}\n  - {name: b, source: s}\n",
        );
        assert_eq!(lines.line("project"), Some(1));
        assert_eq!(lines.line("views"), Some(2));
        assert_eq!(lines.line("views[0]"), Some(3));
        assert_eq!(lines.line("views[0].features[0]"), Some(5));
        assert_eq!(lines.line("views[0].features[0].dtype"), Some(6));
        assert_eq!(lines.line("views[1].source"), Some(7));
        // A path the file lacks falls back to what encloses it.
        assert_eq!(lines.line("views[1].ttl"), Some(7));
        assert_eq!(lines.line("views[1].features[3]"), Some(7));
        assert_eq!(lines.line("nothing"), None);
    }

    #[test]
    fn an_unparsable_document_has_no_lines() {
        assert_eq!(Lines::of("a: [").line("a"), None);
    }
}

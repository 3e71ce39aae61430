//! The bad-input corpus (`testdata/bad-input/`, format in
//! testdata/README.md) turned into [`Invocation`]s, so every plugin suite
//! can run the same hostile inputs against its binary.

use crate::harness::Invocation;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One corpus case.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: PathBuf,
    pub note: String,
    pub expect_code: u64,
    /// A substring the error `msg` must contain (the key or variable at fault).
    pub msg_contains: Option<String>,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub unset: Vec<String>,
    stdin: Stdin,
}

#[derive(Debug, Clone)]
enum Stdin {
    Text(String),
    Json(Value),
    Hex(String),
}

/// Values for the placeholders.
#[derive(Debug, Clone)]
pub struct Bindings {
    pub data_dir: String,
    pub network: String,
    pub netns: String,
}

impl Case {
    pub fn load(file: &Path) -> Result<Case, String> {
        let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let v: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", file.display()))?;
        let bad = |what: &str| format!("{}: {what}", file.display());
        let note = v["note"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("needs a non-empty \"note\""))?
            .to_string();
        let expect_code = v["expectCode"]
            .as_u64()
            .ok_or_else(|| bad("needs a numeric \"expectCode\""))?;
        let msg_contains = match v.get("msgContains") {
            None => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(bad("\"msgContains\" must be a non-empty string")),
        };
        let command = match v.get("command") {
            None => "ADD".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("\"command\" must be a string")),
        };
        let env = match v.get("env") {
            None => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or_else(|| bad("\"env\" values must be strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("\"env\" must be an object")),
        };
        let unset = match v.get("unset") {
            None => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("\"unset\" entries must be strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(bad("\"unset\" must be an array")),
        };
        let sources: Vec<Stdin> = [
            v.get("stdin")
                .and_then(Value::as_str)
                .map(|s| Stdin::Text(s.to_string())),
            v.get("stdinJson").map(|j| Stdin::Json(j.clone())),
            v.get("stdinHex")
                .and_then(Value::as_str)
                .map(|s| Stdin::Hex(s.to_string())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if sources.len() != 1 {
            return Err(bad("needs exactly one of stdin, stdinJson, stdinHex"));
        }
        Ok(Case {
            file: file.to_path_buf(),
            note,
            expect_code,
            msg_contains,
            command,
            env,
            unset,
            stdin: sources.into_iter().next().unwrap(),
        })
    }

    /// Every case of a corpus directory, in file-name order.
    pub fn load_dir(dir: &Path) -> Vec<Case> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read corpus {}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| Case::load(f).unwrap_or_else(|e| panic!("bad corpus file: {e}")))
            .collect()
    }

    pub fn name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The stdin bytes with placeholders expanded.
    pub fn stdin_bytes(&self, b: &Bindings) -> Vec<u8> {
        match &self.stdin {
            Stdin::Text(s) => expand(s, b).into_bytes(),
            Stdin::Json(v) => serde_json::to_vec(&expand_json(v, b)).expect("serialise"),
            Stdin::Hex(h) => decode_hex(h)
                .unwrap_or_else(|| panic!("{}: stdinHex is not hex", self.file.display())),
        }
    }

    /// Apply the case to a default (valid) invocation.
    pub fn apply(&self, base: Invocation, b: &Bindings) -> Invocation {
        let mut inv = base.command(&self.command);
        for (k, v) in &self.env {
            inv = inv.var(k, expand(v, b));
        }
        for k in &self.unset {
            inv = inv.unset(k);
        }
        inv.stdin(self.stdin_bytes(b))
    }
}

fn expand_json(v: &Value, b: &Bindings) -> Value {
    match v {
        Value::String(s) => Value::String(expand(s, b)),
        Value::Array(a) => Value::Array(a.iter().map(|x| expand_json(x, b)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), expand_json(x, b)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Expand `{{DATADIR}}`, `{{NETWORK}}`, `{{NETNS}}` and `{{REPEAT:n:text}}`.
pub fn expand(s: &str, b: &Bindings) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let t = &rest[i + 2..];
        if let Some(r) = t.strip_prefix("DATADIR}}") {
            out.push_str(&b.data_dir);
            rest = r;
        } else if let Some(r) = t.strip_prefix("NETWORK}}") {
            out.push_str(&b.network);
            rest = r;
        } else if let Some(r) = t.strip_prefix("NETNS}}") {
            out.push_str(&b.netns);
            rest = r;
        } else if let Some(r) = t.strip_prefix("REPEAT:") {
            let (n, r) = r.split_once(':').expect("{{REPEAT:n:text}}");
            let n: usize = n.parse().expect("REPEAT count");
            // text = shortest non-empty string followed by "}}"
            let first = r.chars().next().expect("REPEAT text").len_utf8();
            let end = first + r[first..].find("}}").expect("unterminated REPEAT");
            out.push_str(&r[..end].repeat(n));
            rest = &r[end + 2..];
        } else {
            out.push_str("{{");
            rest = t;
        }
    }
    out.push_str(rest);
    out
}

fn decode_hex(h: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = h.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => u8::from_str_radix(std::str::from_utf8(&[*a, *b]).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Bindings {
        Bindings {
            data_dir: "/d".into(),
            network: "n".into(),
            netns: "/ns".into(),
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            expand("{{DATADIR}}/{{NETWORK}}@{{NETNS}}", &b()),
            "/d/n@/ns"
        );
        assert_eq!(expand("x{{REPEAT:3:[}}{{REPEAT:3:]}}}", &b()), "x[[[]]]}");
        assert_eq!(expand("{{REPEAT:3:}}}", &b()), "}}}");
        assert_eq!(
            expand("{{REPEAT:2:{\"a\":}}1{{REPEAT:2:}}}}", &b()),
            "{\"a\":{\"a\":1}}}"
        );
        assert_eq!(expand("{{other}}", &b()), "{{other}}");
        assert_eq!(decode_hex("7b ff"), Some(vec![0x7b, 0xff]));
    }

    #[test]
    fn the_corpus_is_well_formed_and_large_enough() {
        let cases = Case::load_dir(&testdata::bad_input_dir());
        assert!(cases.len() >= 40, "only {} cases", cases.len());
        for c in &cases {
            // Every stdin expands; JSON-ish text stays bounded.
            let bytes = c.stdin_bytes(&b());
            assert!(bytes.len() < 4 << 20, "{}", c.name());
        }
    }
}

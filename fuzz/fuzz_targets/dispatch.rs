//! The whole dispatcher path with a no-op plugin: arbitrary command,
//! environment and stdin. Whatever comes in, the outcome is either success
//! (exit 0) or exactly one error object with a code and a non-empty msg.
#![no_main]
use cni_common::dispatch::{handle, Plugin, Request};
use cni_common::result::CniResult;
use cni_common::Result;
use libfuzzer_sys::fuzz_target;

struct Noop;
impl Plugin for Noop {
    fn about(&self) -> &'static str {
        "no-op fuzz plugin"
    }
    fn add(&self, req: &Request) -> Result<CniResult> {
        match &req.config.prev_result {
            Some(p) => CniResult::parse(p),
            None => Ok(CniResult::default()),
        }
    }
    fn del(&self, _: &Request) -> Result<()> {
        Ok(())
    }
    fn check(&self, _: &Request) -> Result<()> {
        Ok(())
    }
    fn gc(&self, req: &Request) -> Result<()> {
        req.valid_attachments().map(|_| ())
    }
    fn status(&self, _: &Request) -> Result<()> {
        Ok(())
    }
}

const VARS: [&str; 6] = [
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_COMMAND",
];

// Input: up to 6 NUL-separated env values (CNI_COMMAND last), a NUL, then
// stdin. A missing field is an unset variable, "\x01" is set-but-empty.
fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(VARS.len() + 1, |b| *b == 0);
    let mut env = std::collections::HashMap::new();
    for var in VARS {
        match parts.next() {
            Some(b"\x01") => {
                env.insert(var, String::new());
            }
            Some(v) if !v.is_empty() => {
                env.insert(var, String::from_utf8_lossy(v).into_owned());
            }
            _ => {}
        }
    }
    let stdin = parts.next().unwrap_or(b"");
    let cmd = env.get("CNI_COMMAND").cloned();
    let o = handle(&Noop, cmd.as_deref(), stdin, |k| env.get(k).cloned());
    if o.exit_code != 0 {
        let v = o.stdout.expect("an error prints a JSON object");
        assert!(v["code"].as_u64().is_some(), "{v}");
        assert!(!v["msg"].as_str().unwrap_or("").is_empty(), "{v}");
    }
});

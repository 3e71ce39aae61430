//! ipam-prefix's on-disk store: a record file, a slot link's file name and
//! target, the cursor. Read through the store's own reader in a temp store
//! (so a record naming another key, a torn file or a future version goes
//! through the same path as on a node).
#![no_main]
use ipam_prefix::plan::Slot;
use ipam_prefix::store::{AttachmentKey, Record, Store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Record>(data) {
        let j = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<Record>(&j).unwrap(), r);
    }
    let text = String::from_utf8_lossy(data);
    let _ = Slot::parse_hex(&text);
    let _ = Slot::from_file_name(&text);
    if let Some(k) = AttachmentKey::from_file_name(&text) {
        assert!(!k.file_name().contains('/'), "{k:?}");
    }
    thread_local! {
        static DIR: std::path::PathBuf = {
            let d = std::env::temp_dir().join(format!("cni6-fuzz-store-{}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
    }
    DIR.with(|dir| {
        let st = Store::new(dir, "net1", "boot").unwrap();
        let locked = st.open().unwrap();
        let key = AttachmentKey::new("c1", "eth0").unwrap();
        std::fs::write(st.root().join("attachments").join(key.file_name()), data).unwrap();
        let _ = locked.read_record(&key);
        let _ = locked.records();
        let _ = locked.verify(&key, &[]);
    });
});

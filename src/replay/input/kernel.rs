//! The kernel dump as users paste it — `etcdctl get --prefix /tidb/br-stream/` in any of its
//! forms — and what its values mean.
//!
//! Forms read: the plain one (key line, value line; values are binary — protobuf, 8-byte
//! checkpoints — and may hold newlines and control bytes, so a line starts a new key only
//! when it is one), `--keys-only`, `-w json` (base64 keys and values: the form to
//! recommend), `--hex` (`\x2f\x74…` per line), and hex dumps of a plain dump (`xxd`,
//! `hexdump -C`). Values decoded: the task info (protobuf `StreamBackupTaskInfo`, or the
//! JSON fake-br writes), a checkpoint (big-endian TSO), a pause (v1 empty, v2 JSON), the
//! last error (protobuf `StreamBackupError`).

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use super::InputError;
use super::proto::{Field, fields as proto_fields};

/// Where every key of the kernel lives.
pub const PREFIX: &str = "/tidb/br-stream/";

/// One key and its raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelKv {
    pub key: String,
    pub value: Vec<u8>,
}

/// Which form a file holds, if it is a kernel dump at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Plain,
    Json,
    /// `etcdctl get --hex`.
    EscapedHex,
    /// `xxd` or `hexdump -C` of a plain dump.
    HexDump,
}

impl Form {
    pub fn label(self) -> &'static str {
        match self {
            Form::Plain => "kernel dump (etcdctl get)",
            Form::Json => "kernel dump (etcdctl get -w json)",
            Form::EscapedHex => "kernel dump (etcdctl get --hex)",
            Form::HexDump => "kernel dump (a hex dump of etcdctl get)",
        }
    }
}

/// The form of `bytes`, if it is a kernel dump.
pub fn recognise(bytes: &[u8]) -> Option<Form> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let t = text.trim_start();
    if t.starts_with(PREFIX) {
        return Some(Form::Plain);
    }
    if t.starts_with('{') && t.contains("\"kvs\"")
        || t.starts_with('{') && t.contains("\"header\"") && t.contains("\"revision\"")
    {
        return Some(Form::Json);
    }
    // "/tidb" escaped.
    if t.to_ascii_lowercase().starts_with(r"\x2f\x74\x69\x64\x62") {
        return Some(Form::EscapedHex);
    }
    if hex_dump_line(t.lines().next().unwrap_or_default()).is_some_and(|b| b.starts_with(b"/tidb"))
    {
        return Some(Form::HexDump);
    }
    None
}

/// The keys and values of a dump in `form`.
///
/// # Errors
/// A dump that does not parse, naming the file, the line and what was expected.
pub fn parse(file: &Path, bytes: &[u8], form: Form) -> Result<Vec<KernelKv>, InputError> {
    match form {
        Form::Plain => Ok(plain(bytes)),
        Form::Json => json(file, bytes),
        Form::EscapedHex => escaped_hex(file, bytes),
        Form::HexDump => {
            let mut raw = Vec::new();
            for (i, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
                let t = line.trim();
                // The last line of `hexdump -C` is the end offset alone.
                if t.is_empty() || t.len() >= 7 && t.chars().all(|c| c.is_ascii_hexdigit()) {
                    continue;
                }
                if t == "*" {
                    return Err(InputError::new(
                        file,
                        Some(i + 1),
                        "",
                        "`*` stands for repeated lines the dump left out: make it with `hexdump -Cv` (or xxd)",
                    ));
                }
                let Some(b) = hex_dump_line(line) else {
                    return Err(InputError::new(
                        file,
                        Some(i + 1),
                        "",
                        "not a line of `xxd` or `hexdump -C` (offset, hex bytes, text)",
                    ));
                };
                raw.extend(b);
            }
            Ok(plain(&raw))
        }
    }
}

/// Whether `line` names a key: the prefix, then printable characters without spaces.
fn is_key(line: &[u8]) -> bool {
    line.starts_with(PREFIX.as_bytes()) && line.iter().all(|b| b.is_ascii_graphic())
}

/// The plain form: a key line, then its value up to the next key line (values may hold
/// newlines; `--keys-only` leaves them empty).
fn plain(bytes: &[u8]) -> Vec<KernelKv> {
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let mut out: Vec<KernelKv> = Vec::new();
    let mut value: Vec<&[u8]> = Vec::new();
    let flush = |out: &mut Vec<KernelKv>, value: &mut Vec<&[u8]>| {
        if let Some(last) = out.last_mut() {
            // Between two key lines: the value's lines (the newline before the next key
            // is the separator, so a value ending in a newline keeps it).
            last.value = value.join(&b'\n');
        }
        value.clear();
    };
    for line in lines {
        // A CRLF paste ends keys with `\r`; a binary value keeps its bytes.
        let key = line.strip_suffix(b"\r").unwrap_or(line);
        if is_key(key) {
            flush(&mut out, &mut value);
            out.push(KernelKv {
                key: String::from_utf8_lossy(key).into_owned(),
                value: Vec::new(),
            });
        } else if !out.is_empty() {
            value.push(line);
        }
    }
    // The file's own last newline is no part of the last value.
    if value.last().is_some_and(|l| l.is_empty()) {
        value.pop();
    }
    flush(&mut out, &mut value);
    out
}

/// `-w json`: `{"header": …, "kvs": [{"key": base64, "value": base64, …}]}`.
fn json(file: &Path, bytes: &[u8]) -> Result<Vec<KernelKv>, InputError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        InputError::new(
            file,
            Some(e.line()),
            "",
            format!("not the JSON of `etcdctl get -w json`: {e}"),
        )
    })?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (i, kv) in v["kvs"].as_array().into_iter().flatten().enumerate() {
        let field = |name: &str| -> Result<Vec<u8>, InputError> {
            match kv[name].as_str() {
                None if name == "value" => Ok(Vec::new()),
                None => Err(InputError::new(
                    file,
                    None,
                    &format!("kvs[{i}].{name}"),
                    "missing",
                )),
                Some(s) => b64.decode(s).map_err(|e| {
                    InputError::new(
                        file,
                        None,
                        &format!("kvs[{i}].{name}"),
                        format!("not base64: {e}"),
                    )
                }),
            }
        };
        let key = String::from_utf8_lossy(&field("key")?).into_owned();
        out.push(KernelKv {
            key,
            value: field("value")?,
        });
    }
    Ok(out)
}

/// `--hex`: each key and value a line of `\xHH` escapes.
fn escaped_hex(file: &Path, bytes: &[u8]) -> Result<Vec<KernelKv>, InputError> {
    let text = String::from_utf8_lossy(bytes);
    let mut decoded = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut out = Vec::new();
        let mut rest = line.trim_end();
        while !rest.is_empty() {
            let hex = rest
                .strip_prefix("\\x")
                .and_then(|r| r.get(..2))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(InputError::new(
                    file,
                    Some(i + 1),
                    "",
                    "expected \\xHH escapes, as `etcdctl get --hex` prints",
                ));
            };
            out.push(b);
            rest = &rest[4..];
        }
        decoded.push(out);
    }
    let mut kvs = Vec::new();
    let mut it = decoded.into_iter();
    while let Some(key) = it.next() {
        if key.is_empty() {
            continue;
        }
        kvs.push(KernelKv {
            key: String::from_utf8_lossy(&key).into_owned(),
            value: it.next().unwrap_or_default(),
        });
    }
    Ok(kvs)
}

/// The bytes of one `xxd` (`00000000: 2f74 6964 …  /tid…`) or `hexdump -C` (`00000000  2f
/// 74 69 …  |/tid…|`) line.
fn hex_dump_line(line: &str) -> Option<Vec<u8>> {
    let (offset, rest) = line.split_once(|c: char| c == ':' || c.is_whitespace())?;
    if offset.len() < 7 || !offset.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // The hex part ends where the text column begins: `|…|` (hexdump -C; a `|` inside the
    // text is a byte), else two spaces (xxd).
    let hex_part = match rest.trim_end().strip_suffix('|').and_then(|r| r.find('|')) {
        Some(p) => &rest[..p],
        None => rest.trim_start().split("  ").next().unwrap_or(""),
    };
    let digits: String = hex_part.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty()
        || !digits.len().is_multiple_of(2)
        || !digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// What a key names: (kind, task), e.g. (`checkpoint`, `lb1`).
pub fn kind_and_task(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (kind, tail) = rest.split_once('/')?;
    let task = tail.split('/').next().unwrap_or(tail);
    Some((kind, task))
}

/// What a value means, in a line.
pub fn meaning(kv: &KernelKv) -> String {
    let Some((kind, task)) = kind_and_task(&kv.key) else {
        return format!("{}: not a key of a task", kv.key);
    };
    let v = &kv.value;
    match kind {
        "info" => match serde_json::from_slice::<Value>(v) {
            Ok(j) => format!("task {task}: info {j}"),
            Err(_) if v.is_empty() => format!("task {task}: info (no value in the dump)"),
            Err(_) => {
                let f = proto_fields(v);
                let name = f
                    .iter()
                    .find_map(|(n, x)| (*n == 4).then_some(x).and_then(Field::text));
                let start = f
                    .iter()
                    .find_map(|(n, x)| (*n == 2).then_some(x).and_then(Field::number));
                format!(
                    "task {task}: info (protobuf StreamBackupTaskInfo{}{})",
                    name.map(|n| format!(", name {n:?}")).unwrap_or_default(),
                    start
                        .map(|s| format!(", start_ts {s} = {}", tso_time(s)))
                        .unwrap_or_default()
                )
            }
        },
        "checkpoint" | "storage-checkpoint" => match <[u8; 8]>::try_from(v.as_slice()) {
            Ok(b) => {
                let ts = u64::from_be_bytes(b);
                format!("task {task}: checkpoint TSO {ts} = {}", tso_time(ts))
            }
            Err(_) if v.is_empty() => format!("task {task}: key {} (no value in the dump)", kv.key),
            Err(_) => format!("task {task}: checkpoint of {} byte(s), not a TSO", v.len()),
        },
        "pause" => match pause(v) {
            Pause::V1 => format!("task {task}: paused (v1: empty value)"),
            Pause::V2 { severity, detail } => {
                format!("task {task}: paused (v2, severity {severity}{detail})")
            }
            Pause::Unreadable => format!("task {task}: paused (a value that is not PauseV2 JSON)"),
        },
        "last-error" => {
            let f = proto_fields(v);
            let text: Vec<String> = f.iter().filter_map(|(_, x)| x.text()).collect();
            format!("task {task}: last error {}", text.join(": "))
        }
        other => format!("task {task}: {other} ({} byte(s))", v.len()),
    }
}

/// A pause value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    V1,
    V2 { severity: String, detail: String },
    Unreadable,
}

/// Read a pause value: empty (v1) or PauseV2 JSON.
pub fn pause(v: &[u8]) -> Pause {
    if v.iter().all(u8::is_ascii_whitespace) {
        return Pause::V1;
    }
    match serde_json::from_slice::<Value>(v) {
        Ok(j) => Pause::V2 {
            severity: j["severity"].as_str().unwrap_or("?").to_owned(),
            detail: j["operation_hostname"]
                .as_str()
                .map(|h| format!(", by {h}"))
                .unwrap_or_default(),
        },
        Err(_) => Pause::Unreadable,
    }
}

/// A TSO's physical part as a UTC time (the upper 46 bits are milliseconds since 1970).
pub fn tso_time(ts: u64) -> String {
    let ms = i64::try_from(ts >> 18).unwrap_or(i64::MAX);
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| "(not a time)".to_owned(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain dump with binary values: a protobuf info holding a newline byte, an 8-byte
    /// checkpoint holding `\n` and control bytes, an empty (v1) pause.
    fn binary_dump() -> Vec<u8> {
        let mut info = vec![0x10, 0x8a, 0x01]; // start_ts = 138
        info.extend([0x22, 3]);
        info.extend(b"lb1"); // name = "lb1"
        info.extend([0x0a, 2, b'\n', 0x1a]); // storage: bytes with a newline
        let ckpt: u64 = (1_767_225_600_000u64 << 18) | 0x0a;
        let mut d = Vec::new();
        d.extend(b"/tidb/br-stream/info/lb1\n");
        d.extend(&info);
        d.extend(b"\n/tidb/br-stream/checkpoint/lb1/central_global\n");
        d.extend(ckpt.to_be_bytes());
        d.extend(b"\n/tidb/br-stream/pause/lb1\n\n");
        d
    }

    #[test]
    fn a_plain_dump_with_binary_values_parses_and_decodes() {
        let d = binary_dump();
        assert_eq!(recognise(&d), Some(Form::Plain));
        let kvs = parse(Path::new("pd.txt"), &d, Form::Plain).unwrap();
        let keys: Vec<&str> = kvs.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "/tidb/br-stream/info/lb1",
                "/tidb/br-stream/checkpoint/lb1/central_global",
                "/tidb/br-stream/pause/lb1"
            ]
        );
        assert_eq!(kvs[1].value.len(), 8);
        assert!(
            meaning(&kvs[0]).contains("name \"lb1\""),
            "{}",
            meaning(&kvs[0])
        );
        assert!(
            meaning(&kvs[1]).contains("2026-01-01T00:00:00Z"),
            "{}",
            meaning(&kvs[1])
        );
        assert_eq!(meaning(&kvs[2]), "task lb1: paused (v1: empty value)");
    }

    #[test]
    fn the_json_form_and_the_hex_forms_give_the_same_keys() {
        let d = binary_dump();
        let plain = parse(Path::new("a"), &d, Form::Plain).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let kvs: Vec<Value> = plain
            .iter()
            .map(|kv| serde_json::json!({"key": b64.encode(&kv.key), "value": b64.encode(&kv.value), "mod_revision": 7}))
            .collect();
        let j =
            serde_json::json!({"header": {"cluster_id": 1, "revision": 9}, "kvs": kvs, "count": 3})
                .to_string();
        assert_eq!(recognise(j.as_bytes()), Some(Form::Json));
        assert_eq!(
            parse(Path::new("b"), j.as_bytes(), Form::Json).unwrap(),
            plain
        );
        // etcdctl --hex: every key and value escaped, a line each.
        let esc = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        let hex: String = plain
            .iter()
            .map(|kv| format!("{}\n{}\n", esc(kv.key.as_bytes()), esc(&kv.value)))
            .collect();
        assert_eq!(recognise(hex.as_bytes()), Some(Form::EscapedHex));
        assert_eq!(
            parse(Path::new("c"), hex.as_bytes(), Form::EscapedHex).unwrap(),
            plain
        );
        // hexdump -C and xxd of the plain dump.
        let hexdump_c: String = d
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let h: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
                format!(
                    "{:08x}  {:<48} |{}|\n",
                    i * 16,
                    h.join(" "),
                    ".".repeat(c.len())
                )
            })
            .collect();
        assert_eq!(recognise(hexdump_c.as_bytes()), Some(Form::HexDump));
        assert_eq!(
            parse(Path::new("d"), hexdump_c.as_bytes(), Form::HexDump).unwrap(),
            plain
        );
        let xxd: String = d
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let h: Vec<String> = c
                    .chunks(2)
                    .map(|p| p.iter().map(|x| format!("{x:02x}")).collect())
                    .collect();
                format!(
                    "{:08x}: {:<40} {}\n",
                    i * 16,
                    h.join(" "),
                    ".".repeat(c.len())
                )
            })
            .collect();
        assert_eq!(recognise(xxd.as_bytes()), Some(Form::HexDump));
        assert_eq!(
            parse(Path::new("e"), xxd.as_bytes(), Form::HexDump).unwrap(),
            plain
        );
    }

    #[test]
    fn keys_only_and_a_v2_pause_are_read() {
        let d = b"/tidb/br-stream/info/lb1\n\n/tidb/br-stream/pause/lb1\n\n";
        let kvs = parse(Path::new("k"), d, Form::Plain).unwrap();
        assert_eq!(kvs.len(), 2);
        assert!(kvs.iter().all(|k| k.value.is_empty()));
        let v2 =
            br#"{"severity":"ERROR","operation_hostname":"tikv-0","payload_type":"text/plain"}"#;
        assert_eq!(
            pause(v2),
            Pause::V2 {
                severity: "ERROR".into(),
                detail: ", by tikv-0".into()
            }
        );
    }

    #[test]
    fn real_hex_dumps_end_with_an_offset_and_may_show_a_bar() {
        // `hexdump -C` of "/tidb/br-stream/pause/lb1\n|x\n": a `|` byte in the text column,
        // and the end offset alone on the last line.
        let t = "00000000  2f 74 69 64 62 2f 62 72  2d 73 74 72 65 61 6d 2f  |/tidb/br-stream/|\n\
                 00000010  70 61 75 73 65 2f 6c 62  31 0a 7c 78 0a           |pause/lb1.|x.|\n\
                 0000001d\n";
        assert_eq!(recognise(t.as_bytes()), Some(Form::HexDump));
        let kvs = parse(Path::new("h"), t.as_bytes(), Form::HexDump).unwrap();
        assert_eq!(kvs[0].key, "/tidb/br-stream/pause/lb1");
        assert_eq!(kvs[0].value, b"|x");
        // xxd shows the same bar in its text column.
        let x = "00000000: 2f74 6964 622f 6272 2d73 7472 6561 6d2f  /tidb/br-stream/\n\
                 00000010: 7061 7573 652f 6c62 310a 7c78 0a         pause/lb1.|x.\n";
        assert_eq!(
            parse(Path::new("x"), x.as_bytes(), Form::HexDump).unwrap(),
            kvs
        );
        // Lines left out (`*`) cannot be read back: say how to dump them all.
        let e = parse(
            Path::new("h"),
            b"00000000  2f 74 69 64 62 2f  |/tidb/|\n*\n",
            Form::HexDump,
        )
        .unwrap_err();
        assert!(e.to_string().contains("hexdump -Cv"), "{e}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn a_binary_value_keeps_its_carriage_return() {
        let mut d = b"/tidb/br-stream/checkpoint/lb1\r\n".to_vec();
        d.extend([1, 2, 3, 4, 5, 6, 0x0d, 0x0a, 0x0a]);
        let kvs = parse(Path::new("c"), &d, Form::Plain).unwrap();
        assert_eq!(kvs[0].key, "/tidb/br-stream/checkpoint/lb1");
        assert_eq!(kvs[0].value, [1, 2, 3, 4, 5, 6, 0x0d, 0x0a]);
    }

    #[test]
    fn broken_forms_name_the_line() {
        let e = parse(Path::new("h.txt"), b"\\x2f\\x74\nzz\n", Form::EscapedHex).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = parse(
            Path::new("j.json"),
            b"{\"kvs\": [{\"value\": \"AA==\"}]}",
            Form::Json,
        )
        .unwrap_err();
        assert_eq!(e.field, "kvs[0].key");
    }
}

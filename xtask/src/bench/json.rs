//! A small JSON reader for what the bench reads back: procwatch's summary lines, its alert
//! and event JSONL. xtask stays free of serde (its library is a build-dependency of procwatch).
use std::{iter::Peekable, str::CharIndices};

/// A parsed JSON value; objects keep their keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            text,
            chars: text.char_indices().peekable(),
        };
        let value = p.value()?;
        p.skip_ws();
        match p.chars.next() {
            None => Ok(value),
            Some((at, c)) => Err(format!("unexpected {c:?} after the value at byte {at}")),
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows object keys, e.g. `["sensor", "received", "exec"]`.
    pub fn path(&self, keys: &[&str]) -> Option<&Json> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// A non-negative integer (pids, counters).
    pub fn as_u64(&self) -> Option<u64> {
        let n = self.as_f64()?;
        (n >= 0.0 && n.fract() == 0.0 && n < 2f64.powi(53)).then_some(n as u64)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Peekable<CharIndices<'a>>,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self
            .chars
            .peek()
            .is_some_and(|(_, c)| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            self.chars.next();
        }
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.chars.next() {
            Some((_, c)) if c == want => Ok(()),
            Some((at, c)) => Err(format!("expected {want:?}, found {c:?} at byte {at}")),
            None => Err(format!("expected {want:?}, found the end")),
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.skip_ws();
        let Some(&(at, c)) = self.chars.peek() else {
            return Err("expected a value, found the end".into());
        };
        match c {
            '{' => self.object(),
            '[' => self.array(),
            '"' => self.string().map(Json::Str),
            't' => self.word("true", Json::Bool(true)),
            'f' => self.word("false", Json::Bool(false)),
            'n' => self.word("null", Json::Null),
            '-' | '0'..='9' => self.number(),
            _ => Err(format!("unexpected {c:?} at byte {at}")),
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        for want in word.chars() {
            self.expect(want)?;
        }
        Ok(value)
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.chars.peek().map_or(self.text.len(), |(i, _)| *i);
        let mut end = start;
        while let Some(&(i, c)) = self.chars.peek() {
            if !matches!(c, '-' | '+' | '.' | 'e' | 'E' | '0'..='9') {
                break;
            }
            end = i + c.len_utf8();
            self.chars.next();
        }
        let slice = &self.text[start..end];
        slice
            .parse::<f64>()
            .map(Json::Num)
            .map_err(|_| format!("bad number {slice:?} at byte {start}"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let mut n = 0u32;
        for _ in 0..4 {
            let (at, c) = self.chars.next().ok_or("unfinished \\u escape")?;
            let d = c
                .to_digit(16)
                .ok_or_else(|| format!("bad hex digit {c:?} at byte {at}"))?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            let (at, c) = self.chars.next().ok_or("unfinished string")?;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let (_, e) = self.chars.next().ok_or("unfinished escape")?;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A surrogate pair: \uD83D\uDE00.
                                self.expect('\\')?;
                                self.expect('u')?;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                        }
                        other => out.push(other),
                    }
                }
                c if (c as u32) < 0x20 => {
                    return Err(format!("control character in a string at byte {at}"));
                }
                c => out.push(c),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect('[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.chars.peek().is_some_and(|(_, c)| *c == ']') {
            self.chars.next();
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, ']')) => return Ok(Json::Arr(items)),
                Some((at, c)) => return Err(format!("expected , or ] at byte {at}, found {c:?}")),
                None => return Err("unfinished array".into()),
            }
        }
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect('{')?;
        let mut members = Vec::new();
        self.skip_ws();
        if self.chars.peek().is_some_and(|(_, c)| *c == '}') {
            self.chars.next();
            return Ok(Json::Obj(members));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(':')?;
            let value = self.value()?;
            members.push((key, value));
            self.skip_ws();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, '}')) => return Ok(Json::Obj(members)),
                Some((at, c)) => return Err(format!("expected , or }} at byte {at}, found {c:?}")),
                None => return Err("unfinished object".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_procwatch_summary() {
        let line = r#"{"engine":{"alerts":5},"sensor":{"kernel_lost":{"exec":0},"lost_total":2,
            "received":{"exec":163,"connect":0}},"sinks":{"jsonl:/tmp/a b":{"written":5}},
            "stopped":"SIGTERM","x":[1,-2.5e3,true,false,null,[]],"y":{}}"#;
        let v = Json::parse(line).expect("parses");
        assert_eq!(
            v.path(&["sensor", "received", "exec"])
                .and_then(Json::as_u64),
            Some(163)
        );
        assert_eq!(
            v.path(&["sensor", "lost_total"]).and_then(Json::as_u64),
            Some(2)
        );
        assert_eq!(v.get("stopped").and_then(Json::as_str), Some("SIGTERM"));
        assert_eq!(v.get("missing"), None);
        assert_eq!(
            v.get("x"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-2500.0),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Arr(vec![])
            ]))
        );
        assert_eq!(Json::Num(-1.0).as_u64(), None);
        assert_eq!(Json::Num(1.5).as_u64(), None);
    }

    #[test]
    fn string_escapes() {
        let v = Json::parse(r#""a\"b\\c\n\u00e9\ud83d\ude00/""#).expect("parses");
        assert_eq!(v.as_str(), Some("a\"b\\c\né😀/"));
    }

    #[test]
    fn rejects_broken_documents() {
        for bad in [
            "",
            "{",
            r#"{"a":}"#,
            "[1,]",
            r#""abc"#,
            "nul",
            "1 2",
            "{\"a\" 1}",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! The small JSON path subset Apinto's parameter plugins use: `$.a.b`, `a.b`, `$.list[0].x`.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Object member.
    Key(String),
    /// Array element.
    Index(usize),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses `$.a.b[0]` (the `$.` is optional).
    pub fn parse(path: &str) -> Result<Self, String> {
        let rest = path.strip_prefix('$').unwrap_or(path);
        let rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            return Err(format!("JSON path {path:?} names no member"));
        }
        let mut steps = Vec::new();
        for seg in rest.split('.') {
            let (key, mut idx) = match seg.find('[') {
                Some(i) => (&seg[..i], &seg[i..]),
                None => (seg, ""),
            };
            if key.is_empty() && idx.is_empty() {
                return Err(format!("JSON path {path:?} has an empty member"));
            }
            if !key.is_empty() {
                steps.push(Step::Key(key.to_string()));
            }
            while let Some(inner) = idx.strip_prefix('[') {
                let end = inner
                    .find(']')
                    .ok_or_else(|| format!("JSON path {path:?}: unclosed ["))?;
                let n = inner[..end]
                    .parse()
                    .map_err(|_| format!("JSON path {path:?}: bad index {:?}", &inner[..end]))?;
                steps.push(Step::Index(n));
                idx = &inner[end + 1..];
            }
            if !idx.is_empty() {
                return Err(format!("JSON path {path:?}: unexpected {idx:?}"));
            }
        }
        Ok(Self(steps))
    }

    /// The value at the path.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(root, |v, step| match step {
            Step::Key(k) => v.get(k.as_str()),
            Step::Index(i) => v.get(*i),
        })
    }

    /// Sets the value at the path, creating missing objects on the way. Fails when the path
    /// runs through a scalar or past the end of an array.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        let mut cur = root;
        for step in &self.0 {
            cur = match step {
                Step::Key(k) => {
                    if cur.is_null() {
                        *cur = Value::Object(Default::default());
                    }
                    let obj = cur
                        .as_object_mut()
                        .ok_or_else(|| format!("{k:?} is inside a value that is not an object"))?;
                    obj.entry(k.clone()).or_insert(Value::Null)
                }
                Step::Index(i) => cur
                    .as_array_mut()
                    .and_then(|a| a.get_mut(*i))
                    .ok_or_else(|| format!("no array element [{i}]"))?,
            };
        }
        *cur = value;
        Ok(())
    }

    /// Removes the value at the path; returns it.
    pub fn remove(&self, root: &mut Value) -> Option<Value> {
        let (last, parents) = self.0.split_last()?;
        let mut cur = root;
        for step in parents {
            cur = match step {
                Step::Key(k) => cur.get_mut(k.as_str())?,
                Step::Index(i) => cur.get_mut(*i)?,
            };
        }
        match last {
            Step::Key(k) => cur.as_object_mut()?.remove(k),
            Step::Index(i) => {
                let a = cur.as_array_mut()?;
                (*i < a.len()).then(|| a.remove(*i))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_set_remove() {
        let mut v = json!({"a": {"b": 1}, "l": [{"x": 1}]});
        let p = JsonPath::parse("$.a.b").unwrap();
        assert_eq!(p.get(&v), Some(&json!(1)));
        JsonPath::parse("$.a.c.d")
            .unwrap()
            .set(&mut v, json!("new"))
            .unwrap();
        assert_eq!(v["a"]["c"]["d"], "new");
        JsonPath::parse("l[0].x")
            .unwrap()
            .set(&mut v, json!(2))
            .unwrap();
        assert_eq!(v["l"][0]["x"], 2);
        assert_eq!(p.remove(&mut v), Some(json!(1)));
        assert!(p.get(&v).is_none());
        assert!(JsonPath::parse("$.a.b.c")
            .unwrap()
            .set(&mut json!({"a": {"b": 1}}), json!(1))
            .is_err());
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["$", "$.", "a..b", "a[x]", "a[0"] {
            assert!(JsonPath::parse(p).is_err(), "{p}");
        }
    }
}

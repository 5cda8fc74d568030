//! JSON pointers (RFC 6901) on `serde_json` values: removing and setting what they name.

use serde_json::Value;

/// The reference tokens of a JSON pointer, unescaped.
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

fn child<'a>(value: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    }
}

/// Removes the value at `pointer`, if there is one.
pub fn remove(value: &mut Value, pointer: &str) {
    let tokens = tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut at = value;
    for token in parents {
        match child(at, token) {
            Some(next) => at = next,
            None => return,
        }
    }
    match at {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Sets the value at `pointer`, creating missing maps on the way; a path through a list element
/// that `value` lacks is left alone.
pub fn set(value: &mut Value, pointer: &str, new: Value) {
    let tokens = tokens(pointer);
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut at = value;
    for token in parents {
        if let Value::Object(map) = at {
            at = map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Default::default()));
            continue;
        }
        match child(at, token) {
            Some(next) => at = next,
            None => return,
        }
    }
    match at {
        Value::Object(map) => {
            map.insert(last.clone(), new);
        }
        Value::Array(items) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                *slot = new;
            }
        }
        _ => {}
    }
}

/// `value` without what each pointer names (missing paths are no error).
pub fn remove_all(value: &mut Value, pointers: &[String]) {
    for pointer in pointers {
        remove(value, pointer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_and_remove_follow_pointers() {
        let mut value = json!({"a": {"b/c": [1, 2]}});
        set(&mut value, "/a/b~1c/1", json!(3));
        set(&mut value, "/x/y", json!("new"));
        set(&mut value, "/a/b~1c/9/z", json!("skipped"));
        assert_eq!(value, json!({"a": {"b/c": [1, 3]}, "x": {"y": "new"}}));
        remove_all(
            &mut value,
            &["/a/b~1c/0".into(), "/x/y".into(), "/no/such".into()],
        );
        assert_eq!(value, json!({"a": {"b/c": [3]}, "x": {}}));
    }
}

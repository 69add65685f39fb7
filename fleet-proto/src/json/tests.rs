use super::*;

fn p(s: &str) -> Result<Node, Error> {
    parse(Kind::CheckIn, s.as_bytes())
}

#[test]
fn syntax_truncation_and_trailing_bytes() {
    assert!(matches!(p("{\"a\": "), Err(Error::Truncated { .. })));
    assert!(matches!(p("{} {}"), Err(Error::Syntax { .. })));
    assert!(matches!(p("{}x"), Err(Error::Syntax { .. })));
    assert!(matches!(p("\u{feff}{}"), Err(Error::Syntax { .. })));
    assert!(matches!(p("{'a': 1}"), Err(Error::Syntax { .. })));
    assert!(matches!(p("NaN"), Err(Error::Syntax { .. })));
    assert!(matches!(
        parse(Kind::CheckIn, b"{\"a\": \"\xff\"}"),
        Err(Error::Syntax { .. })
    ));
    assert!(p(" {} \n").is_ok());
}

#[test]
fn depth_and_value_count_are_bounded() {
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert_eq!(
        p(&deep).unwrap_err(),
        Error::TooDeep {
            kind: Kind::CheckIn,
            limit: MAX_DEPTH
        }
    );
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(p(&ok).is_ok());
    // Deeper than serde_json's own recursion limit: still our error, no stack overflow.
    let very = "[".repeat(5000);
    assert!(matches!(
        p(&very),
        Err(Error::TooLarge { .. } | Error::TooDeep { .. })
    ));
    let many = format!("[{}0]", "0,".repeat(MAX_VALUES));
    assert!(matches!(
        parse(Kind::Status, many.as_bytes()),
        Err(Error::TooManyValues { .. })
    ));
    // Object keys count too.
    let keys: String = (0..MAX_VALUES / 2)
        .map(|i| format!("\"k{i}\":0,"))
        .collect();
    let keys = format!("{{{keys}\"z\":0}}");
    assert!(matches!(
        parse(Kind::Status, keys.as_bytes()),
        Err(Error::TooManyValues { .. })
    ));
}

#[test]
fn duplicates_are_kept_for_the_object_check() {
    let n = p("{\"a\": 1, \"a\": 2}").unwrap();
    assert!(matches!(
        object(Kind::CheckIn, TOP, &n, &["a"]),
        Err(Error::DuplicateField { .. })
    ));
    let n = p("{\"a\": 1, \"b\": 2}").unwrap();
    assert!(matches!(
        object(Kind::CheckIn, TOP, &n, &["a"]),
        Err(Error::UnknownField { ref field, .. }) if field == "b"
    ));
    let n = p("{\"x\": {\"k\": 1, \"k\": 1}}").unwrap();
    assert!(matches!(
        to_value(Read { kind: Kind::Status }, TOP, &n),
        Err(Error::DuplicateField { .. })
    ));
}

#[test]
fn numbers() {
    let r = Read {
        kind: Kind::CheckIn,
    };
    let n = |s: &str| p(s).unwrap();
    assert_eq!(r.uint("x", &n("7"), 0, 10).unwrap(), 7);
    assert!(matches!(
        r.uint("x", &n("11"), 0, 10),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        r.uint("x", &n("-1"), 0, 10),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        r.uint("x", &n("18446744073709551616"), 0, u64::MAX),
        Err(Error::OutOfRange { .. })
    ));
    assert_eq!(
        r.uint("x", &n("18446744073709551615"), 0, u64::MAX)
            .unwrap(),
        u64::MAX
    );
    assert!(matches!(
        r.uint("x", &n("1.5"), 0, 10),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        r.uint("x", &n("1e0"), 0, 10),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        r.uint("x", &n("\"1\""), 0, 10),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(p("1e400"), Err(Error::Syntax { .. })));
}

#[test]
fn lists_of_messages() {
    let one = |_: usize, n: Node| match n {
        Node::UInt(v) => Ok(v),
        _ => Err(Error::Truncated {
            kind: Kind::BundleList,
        }),
    };
    assert_eq!(
        parse_list(Kind::BundleList, b"[1, 2]", 3, one).unwrap(),
        vec![1, 2]
    );
    assert!(matches!(
        parse_list(Kind::BundleList, b"[1, 2, 3, 4]", 3, one),
        Err(Error::TooLong { .. })
    ));
    assert!(matches!(
        parse_list(Kind::BundleList, b"{}", 3, one),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        parse_list(Kind::BundleList, b"[1, \"x\"]", 3, one),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        parse_list(Kind::BundleList, b"[1, 2", 3, one),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        parse_list(Kind::BundleList, b"[1] 2", 3, one),
        Err(Error::Syntax { .. })
    ));
    let deep = format!("[{}]", "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH));
    assert!(matches!(
        parse_list(Kind::BundleList, deep.as_bytes(), 3, one),
        Err(Error::TooDeep { .. })
    ));
}

//! Parsers of untrusted input never panic and never accept garbage (property tests; the
//! same entry points are what a cargo-fuzz target would call).

use foundations::token::{self as jwt, Kind, TimeRules};
use key_repo::model::validate_cose_key;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn jwt_parse_never_panics(s in ".{0,600}") {
        let _ = jwt::peek(&s, Kind::AccessToken);
        let _ = jwt::peek(&s, Kind::ClientAssertion);
    }

    #[test]
    fn jwt_parts_never_panic(h in "[A-Za-z0-9_-]{0,200}", p in "[A-Za-z0-9_-]{0,400}", sig in "[A-Za-z0-9_-]{0,120}") {
        let tok = format!("{h}.{p}.{sig}");
        // Random bytes are never a valid ES256 signature under a fresh key.
        let signer = jwt::TokenSigner::generate().unwrap();
        let rules = TimeRules { leeway: 0, max_lifetime: u64::MAX };
        prop_assert!(jwt::verify(&tok, Kind::AccessToken, &signer.key_set(), "a", 0, rules).is_err());
    }

    #[test]
    fn cose_key_validation_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate_cose_key(&b);
    }

    #[test]
    fn form_and_product_parsing_never_panic(s in ".{0,200}") {
        let _ = key_repo::util::parse_form(&s);
        let _ = foundations::normalize_product(&s);
        let _ = key_repo::util::valid_kid(&s);
    }
}

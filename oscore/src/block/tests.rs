use super::*;

#[test]
fn block_values() {
    let b = BlockValue::new(3, true, 6);
    assert_eq!(BlockValue::decode(&b.encode()).unwrap(), b);
    assert_eq!(
        BlockValue::decode(&[]).unwrap(),
        BlockValue::new(0, false, 0)
    );
    assert!(BlockValue::decode(&[7]).is_err());
    assert!(BlockValue::decode(&[1, 2, 3, 4]).is_err());
    assert_eq!(szx_for(1024), 6);
    assert_eq!(szx_for(1000), 5);
    assert_eq!(szx_for(16), 0);
    assert_eq!(BlockValue::new(MAX_NUM, true, 6).encode().len(), 3);
}

fn limits() -> AssemblerLimits {
    AssemblerLimits {
        max_body: 40,
        max_uploads: 2,
        max_buffered: 64,
        idle_timeout: Duration::from_secs(10),
    }
}

#[test]
fn assembler() {
    let t = Instant::now();
    let mut a = Block1Assembler::new(limits());
    let k = 1u8;
    assert_eq!(
        a.feed(&k, BlockValue::new(0, true, 0), Some(20), &[1; 16], t),
        Block1Outcome::Continue
    );
    assert_eq!(
        a.feed(&k, BlockValue::new(0, true, 0), None, &[1; 16], t),
        Block1Outcome::Continue
    );
    assert_eq!(
        a.feed(&k, BlockValue::new(2, true, 0), None, &[2; 16], t),
        Block1Outcome::Incomplete
    );
    match a.feed(&k, BlockValue::new(1, false, 0), None, &[2; 4], t) {
        Block1Outcome::Complete(v) => assert_eq!(v.len(), 20),
        o => panic!("{o:?}"),
    }
    assert_eq!(a.buffered(), 0);
    assert_eq!(
        a.feed(&k, BlockValue::new(0, true, 0), Some(41), &[1; 16], t),
        Block1Outcome::TooLarge { max: 40 }
    );
    assert_eq!(
        a.feed(&k, BlockValue::new(0, true, 0), None, &[1; 16], t),
        Block1Outcome::Continue
    );
    assert_eq!(
        a.feed(&k, BlockValue::new(1, true, 0), None, &[1; 16], t),
        Block1Outcome::Continue
    );
    assert_eq!(
        a.feed(&k, BlockValue::new(2, false, 0), None, &[1; 16], t),
        Block1Outcome::TooLarge { max: 40 }
    );
    assert_eq!(a.buffered(), 0);
}

#[test]
fn assembler_global_bounds_and_expiry() {
    let t = Instant::now();
    let mut a = Block1Assembler::new(limits());
    let b0 = BlockValue::new(0, true, 0);
    let b1 = BlockValue::new(1, true, 0);
    assert_eq!(a.feed(&1u8, b0, None, &[0; 16], t), Block1Outcome::Continue);
    assert_eq!(a.feed(&2u8, b0, None, &[0; 16], t), Block1Outcome::Continue);
    // Third concurrent upload refused.
    assert_eq!(
        a.feed(&3u8, b0, None, &[0; 16], t),
        Block1Outcome::TooLarge { max: 0 }
    );
    assert_eq!(a.feed(&1u8, b1, None, &[0; 16], t), Block1Outcome::Continue);
    // 48 bytes buffered; 16 more reach the 64-byte total, 16 after that would exceed it.
    assert_eq!(a.feed(&2u8, b1, None, &[0; 16], t), Block1Outcome::Continue);
    assert_eq!(a.buffered(), 64);
    assert_eq!(
        a.feed(&1u8, BlockValue::new(2, true, 0), None, &[0; 16], t),
        Block1Outcome::TooLarge { max: 40 }
    );
    assert_eq!(a.buffered(), 32);
    // Idle uploads expire and free their bytes.
    let later = t + Duration::from_secs(11);
    assert_eq!(
        a.feed(&3u8, b0, None, &[0; 16], later),
        Block1Outcome::Continue
    );
    assert_eq!(a.in_progress(), 1);
    assert_eq!(a.buffered(), 16);
}

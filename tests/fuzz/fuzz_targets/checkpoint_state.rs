//! The contents of checkpoint and savepoint objects, as a corrupted or
//! tampered store may hold them: a subtask's state object, the keyed state
//! snapshot inside it, in-flight records. Each reader returns its value or
//! an error; what it reads back writes back to the same bytes' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_engine::checkpoint::{SubtaskState, decode_records, encode_records};
use weir_state::KeyedSnapshot;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(state) = SubtaskState::decode(bytes) {
        let again = SubtaskState::decode(&state.encode()).expect("re-encoded state decodes");
        assert_eq!(state, again);
    }
    if let Ok(snapshot) = KeyedSnapshot::decode(bytes) {
        let again = KeyedSnapshot::decode(&snapshot.encode()).expect("re-encoded snapshot decodes");
        assert_eq!(snapshot.encode(), again.encode());
    }
    if let Ok(batch) = decode_records(bytes) {
        batch
            .validate()
            .expect("decoded in-flight records validate");
        let again =
            decode_records(&encode_records(&[batch.clone()])).expect("re-encoded records decode");
        assert_eq!(batch.len(), again.len());
        for (a, b) in batch.records().zip(again.records()) {
            assert_eq!(
                (a.key(), a.value(), a.timestamp()),
                (b.key(), b.value(), b.timestamp())
            );
        }
    }
});

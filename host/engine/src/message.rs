//! What flows on the channels between tasks.

use weir_record::RecordBatch;

/// One element of a stream between tasks.
// Data is the common case and signals are rare: boxing the batch would cost
// an allocation per batch to save bytes on the rare signal.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Message {
    /// A batch of records.
    Data(RecordBatch),
    /// A control signal, in order with the data.
    Signal(Signal),
}

/// Control signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Event time has reached this point at the sender.
    Watermark(crate::watermark::Watermark),
    /// The sender has had no data for its idle timeout; until it sends data
    /// or a watermark again, it does not hold event time back.
    Idle,
    /// Checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(crate::checkpoint::CheckpointId),
    /// The sender has no more data: a bounded source ended, or the job was
    /// cancelled and sources stopped. A task ends once every sender said so.
    EndOfData,
}

import CacheStore
import HTTPCaching
import NIOCore
import Synchronization

/// The body of an object a coalescing leader is fetching and writing to the store, shared with
/// the requests that follow it while it still streams in: they are answered from its bytes as
/// they arrive instead of waiting for the commit (issue 12; Varnish streams a busy object to
/// its waiters the same way).
///
/// Memory stays bounded however large the object is and however late a follower comes: a
/// piece is kept only until the store reports the chunk holding it committed
/// (``ObjectWriter/onChunkWritten``). A reader then takes that part from the store
/// (``Read/stored(chunk:)``) and the rest from memory, so the bytes held are those the store
/// writer has not yet committed, which its write queue already bounds. A chunk whose write
/// failed fails the body (it could be read neither from the store nor, past the queue's
/// bound, from memory).
package final class LiveBody: Sendable, Equatable {
    /// What a reader gets at a position of the body.
    package enum Read: Equatable {
        /// Bytes from that position on (at least one).
        case bytes(ByteBuffer)
        /// That position is in this chunk, committed: read it from the store.
        case stored(chunk: Int)
        /// The body ended before that position.
        case end
        /// The fetch broke off: the body will not be complete.
        case failed
    }

    private enum Progress {
        case streaming, complete, failed
    }

    private struct State {
        /// The pieces from `first` on are held (those before it were committed and dropped).
        var pieces: [(offset: Int64, bytes: ByteBuffer)] = []
        var first = 0
        var received: Int64 = 0
        /// Chunks committed, in order from the first.
        var durableChunks = 0
        /// Chunks reported committed ahead of one that was not (the store reports them in
        /// order; kept so an out-of-order report never drops bytes not yet readable).
        var durableAhead: Set<Int> = []
        var progress = Progress.streaming
        var readers: [CheckedContinuation<Read?, Never>] = []
        var outcome: Coalescer.Outcome?
        var outcomeWaiters: [CheckedContinuation<Coalescer.Outcome, Never>] = []

        func read(at offset: Int64, chunkSize: Int64) -> Read? {
            if case .failed = progress { return .failed }
            if offset < Int64(durableChunks) * chunkSize { return .stored(chunk: Int(offset / chunkSize)) }
            if offset >= received {
                if case .complete = progress { return .end }
                return nil
            }
            // The last held piece that starts at or before `offset` (pieces are in order).
            var (low, high) = (first, pieces.count - 1)
            while low < high {
                let middle = (low + high + 1) / 2
                if pieces[middle].offset <= offset { low = middle } else { high = middle - 1 }
            }
            guard low < pieces.count, pieces[low].offset <= offset,
                offset < pieces[low].offset + Int64(pieces[low].bytes.readableBytes)
            else {
                // Neither committed nor held: cannot happen while pieces are dropped only once
                // committed; a cut is the safe answer.
                return .failed
            }
            let piece = pieces[low]
            let start = Int(offset - piece.offset)
            return piece.bytes.getSlice(at: piece.bytes.readerIndex + start, length: piece.bytes.readableBytes - start)
                .map(Read.bytes) ?? .failed
        }
    }

    /// The record the object will have once committed (its id, response, length): what the
    /// followers' answers are decided from.
    package let record: ObjectRecord
    /// Which requests select this variant (its Vary and secondary key).
    package let variant: VariantRef
    /// The store's purge epoch when the fetch began: a purge since then that covers the
    /// object withdraws it from followers that come after (``CacheStore/purged(_:since:)``).
    package let purgeEpoch: UInt64
    private let state = Mutex(State())

    package init(record: ObjectRecord, variant: VariantRef, purgeEpoch: UInt64) {
        self.record = record
        self.variant = variant
        self.purgeEpoch = purgeEpoch
    }

    package static func == (lhs: LiveBody, rhs: LiveBody) -> Bool { lhs === rhs }

    // MARK: The leader's side

    /// Adds the next bytes of the body as received.
    package func append(_ piece: ByteBuffer) {
        guard piece.readableBytes > 0 else { return }
        let readers = state.withLock { state -> [CheckedContinuation<Read?, Never>] in
            guard case .streaming = state.progress else { return [] }
            state.pieces.append((state.received, piece))
            state.received += Int64(piece.readableBytes)
            defer { state.readers = [] }
            return state.readers
        }
        for reader in readers { reader.resume(returning: nil) }
    }

    /// Chunk `index` of the body is committed: the pieces it covers are read from the store now.
    package func chunkDurable(_ index: Int) {
        let chunkSize = Int64(record.chunkSize)
        state.withLock { state in
            guard index >= state.durableChunks else { return }
            state.durableAhead.insert(index)
            while state.durableAhead.remove(state.durableChunks) != nil { state.durableChunks += 1 }
            let durableBytes = Int64(state.durableChunks) * chunkSize
            while state.first < state.pieces.count,
                state.pieces[state.first].offset + Int64(state.pieces[state.first].bytes.readableBytes) <= durableBytes
            {
                // Dropped in place (the slot's bytes released); the array is compacted once
                // half of it is dropped, so dropping stays O(1) per piece.
                state.pieces[state.first].bytes = ByteBuffer()
                state.first += 1
            }
            if state.first > 16, state.first * 2 > state.pieces.count {
                state.pieces.removeFirst(state.first)
                state.first = 0
            }
        }
    }

    /// The body arrived whole.
    package func complete() { end(.complete) }

    /// The body broke off (upstream failed, the store write failed): followers are cut.
    package func fail() { end(.failed) }

    private func end(_ progress: Progress) {
        let readers = state.withLock { state -> [CheckedContinuation<Read?, Never>] in
            guard case .streaming = state.progress else { return [] }
            state.progress = progress
            if case .failed = progress {
                state.pieces.removeAll()
                state.first = 0
            }
            defer { state.readers = [] }
            return state.readers
        }
        for reader in readers { reader.resume(returning: nil) }
    }

    /// How the leader's fetch ended for the coalescer (stored, not stored, failed): told to the
    /// followers that could not use the body as it streamed and wait for the commit instead.
    func settle(_ outcome: Coalescer.Outcome) {
        let waiters = state.withLock { state -> [CheckedContinuation<Coalescer.Outcome, Never>] in
            guard state.outcome == nil else { return [] }
            state.outcome = outcome
            defer { state.outcomeWaiters = [] }
            return state.outcomeWaiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    // MARK: The followers' side

    /// The bytes at `offset`, waiting for them while the body streams in.
    package func read(at offset: Int64) async -> Read {
        let chunkSize = Int64(record.chunkSize)
        while true {
            let found = await withCheckedContinuation { (continuation: CheckedContinuation<Read?, Never>) in
                let found = state.withLock { state -> Read? in
                    if let found = state.read(at: offset, chunkSize: chunkSize) { return found }
                    state.readers.append(continuation)
                    return nil
                }
                if let found { continuation.resume(returning: found) }
            }
            if let found { return found }
        }
    }

    /// How the leader's fetch ended, once it has (``settle(_:)``).
    func settled() async -> Coalescer.Outcome {
        await withCheckedContinuation { continuation in
            let outcome = state.withLock { state -> Coalescer.Outcome? in
                if let outcome = state.outcome { return outcome }
                state.outcomeWaiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    /// Whether the body broke off: new followers wait for the leader's end instead.
    package var hasFailed: Bool {
        state.withLock {
            if case .failed = $0.progress { return true }
            return false
        }
    }

    /// Readers waiting for bytes, and requests waiting for the leader's end (for tests).
    package var waiting: (readers: Int, outcome: Int) {
        state.withLock { ($0.readers.count, $0.outcomeWaiters.count) }
    }

    /// Bytes held in memory (not yet committed), for tests of the bound.
    package var heldBytes: Int { state.withLock { $0.pieces[$0.first...].reduce(0) { $0 + $1.bytes.readableBytes } } }
}

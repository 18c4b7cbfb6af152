import HTTPCaching
import NIOCore

/// Writes one object's body as it streams in, then commits its record.
///
/// Chunks are queued to the store writer as they fill; the object is invisible until
/// ``commit(response:requestHeaders:storedAt:)`` lands after the last chunk. A writer that is
/// dropped without committing must be ``abandon()``ed so its chunks are removed. Not
/// thread-safe: one writer belongs to one fetch.
public final class ObjectWriter {
    public let id: UInt64
    public let primaryKey: String
    public let secondaryKey: String
    private let varyNames: [String]
    private let writer: StoreWriter
    private let configuration: StoreConfiguration
    private var pending: ByteBuffer
    private var chunkCount = 0
    private(set) public var bodyLength = 0
    private var finished = false

    init(
        writer: StoreWriter, id: UInt64, primaryKey: String, secondaryKey: String, varyNames: [String],
        configuration: StoreConfiguration, allocator: ByteBufferAllocator
    ) {
        self.writer = writer
        self.id = id
        self.primaryKey = primaryKey
        self.secondaryKey = secondaryKey
        self.varyNames = varyNames
        self.configuration = configuration
        self.pending = allocator.buffer(capacity: 0)
    }

    /// Adds body bytes. Throws ``StoreError/objectTooLarge(limit:)`` past max_object_size,
    /// after which the caller should ``abandon()``.
    public func append(_ bytes: ByteBuffer) async throws {
        precondition(!finished, "append after commit or abandon")
        bodyLength += bytes.readableBytes
        guard bodyLength <= configuration.maxObjectSize else {
            throw StoreError.objectTooLarge(limit: configuration.maxObjectSize)
        }
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let room = configuration.chunkSize - pending.readableBytes
            if pending.readableBytes == 0 && bytes.readableBytes >= configuration.chunkSize {
                // A whole chunk straight from the incoming buffer: no copy.
                let chunk = bytes.readSlice(length: configuration.chunkSize)!
                await flushChunk(chunk)
                continue
            }
            var slice = bytes.readSlice(length: min(room, bytes.readableBytes))!
            pending.writeBuffer(&slice)
            if pending.readableBytes == configuration.chunkSize {
                let chunk = pending
                pending = ByteBuffer()
                await flushChunk(chunk)
            }
        }
    }

    private func flushChunk(_ chunk: ByteBuffer) async {
        await writer.enqueueWithBackpressure(.putChunk(id: id, index: chunkCount, bytes: chunk))
        chunkCount += 1
    }

    /// Writes the last chunk and the object's record; returns when it is committed.
    @discardableResult
    public func commit(
        response: StoredResponse, requestHeaders: HeaderFields, storedAt: Double
    ) async throws -> ObjectRecord {
        precondition(!finished, "commit twice")
        if pending.readableBytes > 0 {
            await flushChunk(pending)
            pending = ByteBuffer()
        }
        finished = true
        let record = ObjectRecord(
            id: id, primaryKey: primaryKey, secondaryKey: secondaryKey, response: response, storedAt: storedAt,
            bodyLength: bodyLength, chunkSize: configuration.chunkSize, chunkCount: chunkCount)
        let varyNames = self.varyNames
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            writer.enqueue(
                .commit(
                    record, requestHeaders: requestHeaders, varyNames: varyNames,
                    completion: { continuation.resume(with: $0) }))
        }
        return record
    }

    /// Drops the object: removes whatever chunks were written.
    public func abandon() {
        guard !finished else { return }
        finished = true
        if chunkCount > 0 { writer.enqueue(.discard(id: id)) }
    }
}

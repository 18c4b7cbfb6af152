import HTTPCaching
import NIOCore

/// Writes one object's body as it streams in — and, when asked, other codings of it beside —
/// then commits its record.
///
/// Chunks are queued to the store writer as they fill; the object is invisible until
/// ``commit(response:requestHeaders:storedAt:)`` lands after the last chunk of every stream. A
/// writer that is dropped without committing must be ``abandon()``ed so its chunks are
/// removed. Not thread-safe: one writer belongs to one fetch.
public final class ObjectWriter {
    /// One body being written: the primary one (stream 0) or an alternate coding.
    private struct Stream {
        var coding: String
        var owner: UInt64
        var pending = ByteBuffer()
        var chunkCount = 0
        var length = 0
    }

    public let id: UInt64
    public let primaryKey: String
    public let secondaryKey: String
    private let varyNames: [String]
    private let writer: StoreWriter
    private let configuration: StoreConfiguration
    private var streams: [Stream]
    private var finished = false
    /// The purge epoch when the write began (see `PurgeLog`).
    private let purgeEpoch: UInt64
    /// Whether this writer adds codings to a stored object rather than writing a new one.
    private let isAlternateWriter: Bool

    public var bodyLength: Int { streams[0].length }

    /// Told, for each chunk of the body as received (stream 0), its index and whether its
    /// write committed (in order) or failed (the object will then not commit either).
    public var onChunkWritten: (@Sendable (_ index: Int, _ committed: Bool) -> Void)?

    init(
        writer: StoreWriter, id: UInt64, primaryKey: String, secondaryKey: String, varyNames: [String],
        configuration: StoreConfiguration, allocator: ByteBufferAllocator, purgeEpoch: UInt64,
        isAlternateWriter: Bool = false
    ) {
        self.writer = writer
        self.id = id
        self.primaryKey = primaryKey
        self.secondaryKey = secondaryKey
        self.varyNames = varyNames
        self.configuration = configuration
        self.streams = [Stream(coding: "", owner: id)]
        self.purgeEpoch = purgeEpoch
        self.isAlternateWriter = isAlternateWriter
    }

    /// Opens another stream for the same content in `coding`; returns its number for
    /// ``append(_:to:)``.
    public func addAlternate(coding: String) -> Int {
        precondition(!finished, "alternate after commit or abandon")
        streams.append(Stream(coding: coding, owner: writer.allocateObjectID()))
        return streams.count - 1
    }

    /// The id the chunks of stream `stream` are stored under.
    public func chunkOwner(of stream: Int) -> UInt64 { streams[stream].owner }

    /// Adds body bytes to stream `stream` (0: the body as received). Throws
    /// ``StoreError/objectTooLarge(limit:)`` past max_object_size, after which the caller
    /// should ``abandon()``.
    public func append(_ bytes: ByteBuffer, to stream: Int = 0) async throws {
        precondition(!finished, "append after commit or abandon")
        streams[stream].length += bytes.readableBytes
        guard streams[stream].length <= configuration.maxObjectSize else {
            throw StoreError.objectTooLarge(limit: configuration.maxObjectSize)
        }
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let room = configuration.chunkSize - streams[stream].pending.readableBytes
            if streams[stream].pending.readableBytes == 0 && bytes.readableBytes >= configuration.chunkSize {
                // A whole chunk straight from the incoming buffer: no copy.
                await flushChunk(bytes.readSlice(length: configuration.chunkSize)!, stream: stream)
                continue
            }
            var slice = bytes.readSlice(length: min(room, bytes.readableBytes))!
            streams[stream].pending.writeBuffer(&slice)
            if streams[stream].pending.readableBytes == configuration.chunkSize {
                let chunk = streams[stream].pending
                streams[stream].pending = ByteBuffer()
                await flushChunk(chunk, stream: stream)
            }
        }
    }

    private func flushChunk(_ chunk: ByteBuffer, stream: Int) async {
        let owner = streams[stream].owner
        let index = streams[stream].chunkCount
        let written = stream == 0 ? onChunkWritten.map { report in { @Sendable in report(index, $0) } } : nil
        await writer.enqueueWithBackpressure(.putChunk(id: owner, index: index, bytes: chunk, written: written))
        streams[stream].chunkCount += 1
    }

    /// The variant being written: which requests select it once it is committed (RFC 9111 §4.1).
    public var variant: VariantRef { VariantRef(objectID: id, secondaryKey: secondaryKey, varyNames: varyNames) }

    /// The record this writer will commit for `response` once `bodyLength` bytes have arrived:
    /// what requests following the fetch are answered from while the body still streams in.
    public func provisionalRecord(response: StoredResponse, storedAt: Double, bodyLength: Int) -> ObjectRecord {
        let chunkSize = configuration.chunkSize
        return ObjectRecord(
            id: id, primaryKey: primaryKey, secondaryKey: secondaryKey, response: response, storedAt: storedAt,
            bodyLength: bodyLength, chunkSize: chunkSize, chunkCount: (bodyLength + chunkSize - 1) / chunkSize)
    }

    /// Writes the last chunks and the object's record; returns when it is committed.
    @discardableResult
    public func commit(
        response: StoredResponse, requestHeaders: HeaderFields, storedAt: Double
    ) async throws -> ObjectRecord {
        precondition(!finished, "commit twice")
        precondition(!isAlternateWriter, "an alternate writer commits with commitAlternates()")
        await flushLastChunks()
        finished = true
        var record = ObjectRecord(
            id: id, primaryKey: primaryKey, secondaryKey: secondaryKey, response: response, storedAt: storedAt,
            bodyLength: streams[0].length, chunkSize: configuration.chunkSize, chunkCount: streams[0].chunkCount)
        record.alternates = alternates
        let varyNames = self.varyNames
        let committed = record
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            writer.enqueue(
                .commit(
                    committed, requestHeaders: requestHeaders, varyNames: varyNames, purgeEpoch: purgeEpoch,
                    completion: { continuation.resume(with: $0) }))
        }
        return record
    }

    /// Adds the alternate streams to the already stored object ``id`` (a writer made by
    /// ``CacheStore/makeAlternateWriter(objectID:)``, whose stream 0 stays empty); returns when
    /// that is committed. False, with the chunks removed, when the object is gone (purged,
    /// evicted, replaced) or already has alternates.
    public func commitAlternates() async throws -> Bool {
        precondition(!finished, "commit twice")
        await flushLastChunks()
        finished = true
        let (id, alternates) = (self.id, self.alternates)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, Error>) in
            writer.enqueue(.addAlternates(id: id, alternates, completion: { continuation.resume(with: $0) }))
        }
    }

    /// Writes every stream's last, partly filled chunk (stream 0 of an alternate writer never
    /// has one).
    private func flushLastChunks() async {
        for stream in streams.indices where streams[stream].pending.readableBytes > 0 {
            let last = streams[stream].pending
            streams[stream].pending = ByteBuffer()
            await flushChunk(last, stream: stream)
        }
    }

    /// The alternate streams as the object record lists them.
    private var alternates: [Alternate] {
        streams.dropFirst().map {
            Alternate(coding: $0.coding, chunkOwner: $0.owner, length: $0.length, chunkCount: $0.chunkCount)
        }
    }

    /// Drops the object: removes whatever chunks were written.
    public func abandon() {
        guard !finished else { return }
        finished = true
        // Stream 0 of an alternate writer is the stored object itself: never discarded here.
        for stream in streams.dropFirst(isAlternateWriter ? 1 : 0) where stream.chunkCount > 0 {
            writer.enqueue(.discard(id: stream.owner))
        }
    }
}

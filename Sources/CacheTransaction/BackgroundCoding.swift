import CacheStore
import ContentCoding
import EdgeTelemetry
import HTTPCaching
import Logging
import NIOConcurrencyHelpers
import NIOCore
import OutpostConfig

/// Codes stored identity objects into br and gzip, one object at a time, off the event loops
/// (issue 9: compression never sits between the origin's bytes and a client, and a hit
/// never compresses).
///
/// An object is coded on first demand: when a request that would take br or gzip finds it
/// (its miss, or a later hit) without codings. The job reads the stored body chunk by chunk,
/// feeds both encoders, writes their output as the object's alternates and commits them in
/// one transaction (``ObjectWriter/commitAlternates()``); hits see the codings from then on.
/// Until then every client gets identity with `Vary: Accept-Encoding`, which is always
/// acceptable to it (RFC 9110 §12.5.3).
///
/// The queue is bounded (`compression.max_pending_codings`): past it a demand is dropped and
/// counted, and a later request for the object asks again. An object is queued at most once.
package final class BackgroundCoding: Sendable {
    struct Job: Sendable {
        var objectID: UInt64
        var compression: OutpostConfiguration.Compression
    }

    private let pending: NIOLockedValueBox<Set<UInt64>>
    private let telemetry: Telemetry
    private let jobs: AsyncStream<Job>.Continuation
    private let runner: Task<Void, Never>

    init(store: CacheStore, limit: Int, telemetry: Telemetry, logger: Logger) {
        let (stream, jobs) = AsyncStream.makeStream(of: Job.self, bufferingPolicy: .bufferingOldest(max(1, limit)))
        let pending = NIOLockedValueBox(Set<UInt64>())
        self.pending = pending
        self.telemetry = telemetry
        self.jobs = jobs
        runner = Task {
            for await job in stream {
                let outcome = await BackgroundCoding.code(job, store: store, logger: logger)
                pending.withLockedValue { _ = $0.remove(job.objectID) }
                switch outcome {
                case .coded: telemetry.recordCoding(.coded)
                case .failed: telemetry.recordCoding(.failed)
                case .skipped: break
                }
            }
        }
    }

    /// Queues object `id` for coding unless it is queued already or the queue is full.
    package func request(_ id: UInt64, compression: OutpostConfiguration.Compression) {
        guard pending.withLockedValue({ $0.insert(id).inserted }) else { return }
        if case .enqueued = jobs.yield(Job(objectID: id, compression: compression)) { return }
        pending.withLockedValue { _ = $0.remove(id) }
        telemetry.recordCoding(.dropped)
    }

    /// Stops taking jobs and waits for the one under way (before the store closes).
    func shutdown() async {
        jobs.finish()
        runner.cancel()
        await runner.value
    }

    enum Outcome {
        case coded
        /// Nothing to do: the object is gone, already coded, or not compressible (any more).
        case skipped
        case failed
    }

    /// Codes one object: its body through a brotli and a gzip encoder, into its alternates.
    private static func code(_ job: Job, store: CacheStore, logger: Logger) async -> Outcome {
        if Task.isCancelled { return .skipped }
        let id = job.objectID
        guard let record = try? store.object(id: id), Representation.mayBeCoded(record, compression: job.compression)
        else { return .skipped }
        let writer: ObjectWriter
        do {
            writer = try store.makeAlternateWriter(objectID: id)
        } catch {
            return .skipped
        }
        do {
            // A window no larger than the body: brotli's default (4 MiB) and deflate's (256 KiB
            // of state) would be allocated and cleared for every small object.
            let length = max(1, record.bodyLength)
            let windowBits = max(10, min(22, Int.bitWidth - length.leadingZeroBitCount + 1))
            let encoders: [(stream: Int, coder: any StreamCoder)] = [
                (
                    writer.addAlternate(coding: ContentCodingName.br.rawValue),
                    try BrotliEncoder(quality: job.compression.brotliQuality, windowBits: windowBits)
                ),
                (
                    writer.addAlternate(coding: ContentCodingName.gzip.rawValue),
                    try GzipEncoder(level: job.compression.gzipLevel, windowBits: windowBits)
                ),
            ]
            var read = 0
            for index in 0..<record.chunkCount {
                guard let chunk = try store.readChunk(objectID: id, index: index) else {
                    // Evicted or purged while it was being read.
                    writer.abandon()
                    return .skipped
                }
                read += chunk.readableBytes
                for encoder in encoders {
                    let coded = try encoder.coder.process(chunk)
                    if coded.readableBytes > 0 { try await writer.append(coded, to: encoder.stream) }
                }
            }
            guard read == record.bodyLength else {
                writer.abandon()
                logger.error(
                    "stored body shorter than its record; not coded",
                    metadata: ["url": "\(record.primaryKey)", "bytes": "\(read)", "length": "\(record.bodyLength)"])
                return .failed
            }
            for encoder in encoders {
                let coded = try encoder.coder.finish()
                if coded.readableBytes > 0 { try await writer.append(coded, to: encoder.stream) }
            }
            return try await writer.commitAlternates() ? .coded : .skipped
        } catch {
            writer.abandon()
            logger.warning("background coding failed", metadata: ["url": "\(record.primaryKey)", "error": "\(error)"])
            return .failed
        }
    }
}

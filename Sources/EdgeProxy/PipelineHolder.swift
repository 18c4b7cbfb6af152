import CacheTransaction
import NIOConcurrencyHelpers
import Synchronization

/// The request pipeline in force. A configuration reload (SIGHUP) builds a new pipeline and
/// swaps it in here; requests already running keep the one they started with.
final class PipelineHolder: Sendable {
    private let box: NIOLockedValueBox<CachePipeline>
    /// Bumped by every swap, so an event loop can keep the pipeline it read and take the lock
    /// only after a reload (``LoopPipeline``).
    private let swaps = Atomic<Int>(0)

    init(_ pipeline: CachePipeline) { box = NIOLockedValueBox(pipeline) }

    var current: CachePipeline { box.withLockedValue { $0 } }

    /// The number of swaps so far.
    var generation: Int { swaps.load(ordering: .acquiring) }

    func replace(_ pipeline: CachePipeline) {
        box.withLockedValue { $0 = pipeline }
        swaps.add(1, ordering: .releasing)
    }
}

/// One event loop's copy of the pipeline in force: read without a lock until a reload.
final class LoopPipeline {
    private let holder: PipelineHolder
    private var generation: Int
    private var pipeline: CachePipeline

    init(_ holder: PipelineHolder) {
        self.holder = holder
        generation = holder.generation
        pipeline = holder.current
    }

    var current: CachePipeline {
        let now = holder.generation
        if now != generation {
            generation = now
            pipeline = holder.current
        }
        return pipeline
    }
}

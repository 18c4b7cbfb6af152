import NIOConcurrencyHelpers

/// The request pipeline in force. A configuration reload (SIGHUP) builds a new pipeline and
/// swaps it in here; requests already running keep the one they started with.
final class PipelineHolder: Sendable {
    private let box: NIOLockedValueBox<CachePipeline>

    init(_ pipeline: CachePipeline) { box = NIOLockedValueBox(pipeline) }

    var current: CachePipeline { box.withLockedValue { $0 } }

    func replace(_ pipeline: CachePipeline) { box.withLockedValue { $0 = pipeline } }
}

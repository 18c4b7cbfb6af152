import CacheStore
import NIOCore

/// Where the pieces of a fetched body go as they arrive: to the client while it is there (only
/// the bytes of its range when it asked for one, as soon as they are here), to the store
/// while the object is being written, and to the requests following the fetch (``LiveBody``).
package struct FetchDelivery {
    let sink: any ResponseSink
    /// The bytes of the body as received that the client gets; nil for all of them.
    let window: ClosedRange<Int64>?
    private(set) var writer: ObjectWriter?
    /// The body as the followers of this fetch read it while it is written.
    private(set) var live: LiveBody?
    /// Whether the client still takes body bytes.
    private(set) var clientAlive: Bool
    /// Body bytes the client was sent.
    private(set) var sent = 0
    /// The client's response was ended here, complete (at the end of its range, or of the body).
    private(set) var clientFinished = false
    /// A store write failed and the object was abandoned.
    private(set) var storeFailed = false
    /// Position in the body as received of the next byte for the client.
    private var position: Int64 = 0

    init(
        sink: any ResponseSink, window: ClosedRange<Int64>?, writer: ObjectWriter?, live: LiveBody?,
        clientAlive: Bool
    ) {
        self.sink = sink
        self.window = window
        self.writer = writer
        self.live = live
        self.clientAlive = clientAlive
    }

    /// Sends `output` to the client and stores `piece`; false when neither has a taker left.
    mutating func deliver(_ piece: ByteBuffer, output: FetchCoding.Output) async -> Bool {
        var forClient = output.client
        if let window, let bytes = forClient {
            let start = max(window.lowerBound, position)
            let end = min(window.upperBound, position + Int64(bytes.readableBytes) - 1)
            forClient =
                end >= start
                ? bytes.getSlice(at: bytes.readerIndex + Int(start - position), length: Int(end - start + 1)) : nil
            position += Int64(bytes.readableBytes)
        }
        if clientAlive, let forClient, forClient.readableBytes > 0 {
            do {
                try await sink.sendBody(forClient)
                sent += forClient.readableBytes
            } catch {
                // The client left; keep filling the store for the others if we can.
                clientAlive = false
            }
        }
        if clientAlive, let window, position > window.upperBound {
            // The range is complete: the client has its answer while the store fills.
            await finishClient()
        }
        if let current = writer, piece.readableBytes > 0 {
            // The followers first: the store write may wait for room in the writer's queue.
            live?.append(piece)
            do {
                try await current.append(piece)
            } catch {
                abandonStore()
                storeFailed = true
            }
        }
        return clientAlive || writer != nil
    }

    /// Ends the client's response (its body is complete).
    mutating func finishClient() async {
        guard clientAlive else { return }
        await sink.finish()
        clientAlive = false
        clientFinished = true
    }

    /// The body arrived whole (`complete`) or not: the followers reading it are told either way.
    mutating func endLive(complete: Bool) {
        if complete && writer != nil { live?.complete() } else { live?.fail() }
        live = nil
    }

    /// Stops writing the object: what was written is dropped, and the followers reading it
    /// (who may need those chunks) are cut.
    mutating func abandonStore() {
        writer?.abandon()
        writer = nil
        live?.fail()
        live = nil
    }
}

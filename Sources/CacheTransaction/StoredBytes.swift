import CacheStore
import NIOCore

/// The stored bytes of one representation: where its chunks live and how long it is. Built
/// here only, from the record (and the representation) they belong to.
package struct StoredBytes {
    package var owner: UInt64
    package var length: Int64
    package var chunkSize: Int64
    /// The whole body when it came with the lookup (primary representation, one chunk).
    package var inline: ByteBuffer?

    /// The body stored with a record itself (its primary representation, or a stored part).
    init(primaryOf record: ObjectRecord, inline: ByteBuffer? = nil) {
        self.init(
            owner: record.id, length: Int64(record.bodyLength), chunkSize: Int64(record.chunkSize), inline: inline)
    }

    private init(owner: UInt64, length: Int64, chunkSize: Int64, inline: ByteBuffer?) {
        self.owner = owner
        self.length = length
        self.chunkSize = chunkSize
        self.inline = inline
    }

    /// Where a representation's bytes are stored; nil when it is decoded while it is sent.
    package init?(_ record: ObjectRecord, _ representation: Representation, inline: ByteBuffer?) {
        switch representation.source {
        case .primary:
            self.init(primaryOf: record, inline: inline)
        case .alternate(let alternate):
            self.init(
                owner: alternate.chunkOwner, length: Int64(alternate.length), chunkSize: Int64(record.chunkSize),
                inline: nil)
        case .decoded:
            return nil
        }
    }

    /// The part of bytes `lower...upper` that chunk `index` holds, cut from the chunk as read;
    /// nil when the chunk ends before that part does (a body shorter than its record says:
    /// the client must see a cut, never bytes from another position).
    package func part(of chunk: ByteBuffer, index: Int, lower: Int64, upper: Int64) -> ByteBuffer? {
        let chunkStart = Int64(index) * chunkSize
        let start = max(lower, chunkStart) - chunkStart
        let end = min(upper, chunkStart + chunkSize - 1) - chunkStart
        guard end >= start, Int64(chunk.readableBytes) > end else { return nil }
        return chunk.getSlice(at: chunk.readerIndex + Int(start), length: Int(end - start + 1))
    }
}

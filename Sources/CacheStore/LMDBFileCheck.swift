import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A structural check of an LMDB data file, made with plain reads before liblmdb maps it.
///
/// liblmdb trusts its file: a page number past the end of a truncated file is a SIGBUS when it
/// is touched, and a damaged branch or leaf page sends it to garbage offsets (SIGSEGV) or into
/// its own assertions (SIGABRT). None of that can be caught, so the store checks what liblmdb
/// would follow before it opens the file (docs/architecture.md, "Store integrity"):
///
/// - the two meta pages: magic, version, page size, and a last page that the file holds;
/// - every B-tree (the free-page list, the main tree, each named database), walked from its
///   root: every page number inside the file, every page carrying its own number and the kind
///   its parent expects (branch, leaf, overflow), every node and key inside its page, every
///   large value's overflow pages inside the file and long enough for its size;
/// - no page reached twice (a cycle, or a page both in a tree and free).
///
/// The layout is liblmdb 0.9's (lmdb.h, mdb.c), for 64-bit builds: 16-byte page headers,
/// 8-byte page numbers, little-endian. What this does not catch, changed bytes inside a key or
/// value, the checksums catch (``Checksum``).
struct LMDBFileCheck {
    /// Why a data file is refused.
    struct Damage: Error, CustomStringConvertible {
        var description: String
        /// The file has no LMDB meta page at all: it is not a damaged store but something else.
        var notLMDB = false
    }

    /// What a passing check saw.
    struct Summary: Equatable {
        var pageSize: Int
        var lastPage: UInt64
        var fileBytes: UInt64
        var treePages: Int
        var overflowPages: Int
        var freePages: Int
    }

    private static let headerSize = 16
    private static let nodeHeaderSize = 8
    private static let magic: UInt32 = 0xBEEF_C0DE
    private static let dataVersion: UInt32 = 1
    private static let invalidPage = UInt64.max

    private enum PageFlag {
        static let branch: UInt16 = 0x01
        static let leaf: UInt16 = 0x02
        static let overflow: UInt16 = 0x04
        static let meta: UInt16 = 0x08
        static let leaf2: UInt16 = 0x20
        static let subPage: UInt16 = 0x40
    }

    private enum NodeFlag {
        static let bigData: UInt16 = 0x01
        static let subData: UInt16 = 0x02
        static let dupData: UInt16 = 0x04
    }

    /// A tree's description (MDB_db): its root and depth.
    private struct Tree {
        var flags: UInt16
        var depth: UInt16
        var root: UInt64

        /// An MDB_db record at `offset`: u32 pad, u16 flags, u16 depth, three page counts, the
        /// entry count, the root.
        init(_ page: PageBytes, at offset: Int) {
            flags = page.u16(at: offset + 4)
            depth = page.u16(at: offset + 6)
            root = page.u64(at: offset + 40)
        }
    }

    private let descriptor: Int32
    private let fileBytes: UInt64
    private var pageSize = 4096
    private var lastPage: UInt64 = 0
    /// One bit per page: reached already.
    private var seen: [UInt64] = []
    /// The named databases the main tree describes.
    private var named: [(String, Tree)] = []
    private var summary = Summary(pageSize: 0, lastPage: 0, fileBytes: 0, treePages: 0, overflowPages: 0, freePages: 0)

    /// Checks the data file at `path`; throws ``Damage`` saying what is wrong.
    static func check(dataFile path: String) throws -> Summary {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw Damage(description: "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw Damage(description: "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        var check = LMDBFileCheck(descriptor: descriptor, fileBytes: UInt64(max(0, info.st_size)))
        return try check.run()
    }

    private init(descriptor: Int32, fileBytes: UInt64) {
        self.descriptor = descriptor
        self.fileBytes = fileBytes
    }

    private mutating func run() throws -> Summary {
        let (free, main) = try readMeta()
        seen = Array(repeating: 0, count: Int(lastPage / 64) + 1)
        mark(0)
        mark(1)
        summary.pageSize = pageSize
        summary.lastPage = lastPage
        summary.fileBytes = fileBytes
        // The free list: keys are transaction ids, values lists of free page numbers.
        try walk(free, name: "free-page list", kind: .freeList)
        try walk(main, name: "main tree", kind: .main)
        for (name, tree) in named { try walk(tree, name: "database \"\(name)\"", kind: .named) }
        return summary
    }

    // MARK: meta pages

    /// Picks the meta page liblmdb would use (the valid one with the higher transaction id).
    private mutating func readMeta() throws -> (free: Tree, main: Tree) {
        guard fileBytes >= 2 * 4096 else {
            throw Damage(
                description: "the data file is \(fileBytes) bytes, too short for LMDB's two meta pages",
                notLMDB: fileBytes == 0)
        }
        // The page size is in each meta page (the free tree's md_pad); both use the same. Meta
        // page 0 gives it; when page 0 is damaged, page 1 is looked for at the usual sizes. No
        // meta page at all: not an LMDB file.
        var first = try read(at: 0, count: 4096)
        if first.u32(at: Self.headerSize) != Self.magic {
            var second: PageBytes?
            for size in [4096, 8192, 16384, 32768, 65536] where UInt64(2 * size) <= fileBytes {
                if let page = try? read(at: UInt64(size), count: 4096), page.u32(at: Self.headerSize) == Self.magic,
                    Int(page.u32(at: Self.headerSize + 24)) == size
                {
                    second = page
                    break
                }
            }
            guard let second else {
                throw Damage(description: "meta page 0 is not an LMDB meta page", notLMDB: true)
            }
            first = second
        }
        let size = Int(first.u32(at: Self.headerSize + 24))
        guard [4096, 8192, 16384, 32768, 65536].contains(size) else {
            throw Damage(description: "meta page 0 names a page size of \(size) bytes")
        }
        pageSize = size
        guard fileBytes >= UInt64(2 * size) else {
            throw Damage(description: "the data file is \(fileBytes) bytes, too short for two \(size)-byte meta pages")
        }
        var best: (txnid: UInt64, last: UInt64, free: Tree, main: Tree, index: Int)?
        var problems: [String] = []
        for index in 0..<2 {
            let page = try read(at: UInt64(index * size), count: size)
            let base = Self.headerSize
            guard page.u16(at: 10) & PageFlag.meta != 0, page.u32(at: base) == Self.magic,
                page.u32(at: base + 4) == Self.dataVersion
            else {
                problems.append("meta page \(index) is not an LMDB meta page")
                continue
            }
            // liblmdb takes the page size from the meta page it uses and reads the other meta
            // page through the map at that offset: another size is damage (a SIGBUS past the file).
            guard Int(page.u32(at: base + 24)) == size else {
                problems.append("meta page \(index) names a page size of \(page.u32(at: base + 24)) bytes, not \(size)")
                continue
            }
            let free = Tree(page, at: base + 24)
            let main = Tree(page, at: base + 72)
            let last = page.u64(at: base + 120)
            let txnid = page.u64(at: base + 128)
            if best == nil || txnid > best!.txnid { best = (txnid, last, free, main, index) }
        }
        guard let best else { throw Damage(description: problems.joined(separator: "; "), notLMDB: true) }
        // liblmdb refuses the environment when either meta page is bad.
        guard problems.isEmpty else { throw Damage(description: problems.joined(separator: "; ")) }
        // Transaction N is written to meta page N & 1, and liblmdb's readers pick the meta page
        // by that parity (not by comparing the two): a meta page whose transaction id has the
        // other parity would send readers to the other page's trees, which this check did not walk.
        guard best.txnid & 1 == UInt64(best.index) else {
            throw Damage(
                description: "meta page \(best.index) carries transaction \(best.txnid), which belongs in meta page "
                    + "\(best.txnid & 1)")
        }
        // The file may end before the last page in use: pages a transaction allocated and
        // freed again are counted but never written (they are free). Pages the trees reach
        // must be inside the file; that is checked as they are reached.
        // Those unwritten pages are few; a last page far past the file is damage (and the
        // bitmap of pages reached is sized from it).
        let filePages = fileBytes / UInt64(size)
        guard best.last >= 1, best.last <= filePages + max(4096, filePages / 2) else {
            throw Damage(
                description: "the meta page names \(best.last) as its last page; the file holds \(filePages) pages")
        }
        lastPage = best.last
        return (best.free, best.main)
    }

    // MARK: trees

    private struct Value {
        /// The named database a main-tree node describes (F_SUBDATA), if it is one.
        var tree: Tree?
        /// The value bytes, when they are inside the leaf page (not an overflow value).
        var inline: [UInt8]?
        /// The size of an overflow value, read by ``checkFreeList(_:)`` when needed.
        var overflow: (page: UInt64, size: Int)?
    }

    /// What a tree's leaf values are.
    private enum Kind {
        /// Free page lists (checked).
        case freeList
        /// The named databases' records (collected into ``named``).
        case main
        /// A named database's values (sealed; their checksums cover their bytes).
        case named
    }

    /// Walks a tree from its root, checking every page and node and each leaf value as its
    /// kind requires.
    private mutating func walk(_ tree: Tree, name: String, kind: Kind) throws {
        guard tree.root != Self.invalidPage else { return }
        guard tree.depth >= 1, tree.depth <= 64 else {
            throw Damage(description: "the \(name) has a depth of \(tree.depth)")
        }
        try walkPage(tree.root, level: 1, depth: Int(tree.depth), name: name, kind: kind)
    }

    private mutating func visit(_ key: [UInt8], _ value: Value, kind: Kind) throws {
        switch kind {
        case .freeList: try checkFreeList(value)
        case .main: if let tree = value.tree { named.append((String(decoding: key, as: UTF8.self), tree)) }
        case .named: break
        }
    }

    private mutating func walkPage(_ number: UInt64, level: Int, depth: Int, name: String, kind: Kind) throws {
        let page = try treePage(number, name: name)
        let flags = page.u16(at: 10)
        let isLeaf = level == depth
        let expected = isLeaf ? PageFlag.leaf : PageFlag.branch
        guard flags & (PageFlag.branch | PageFlag.leaf | PageFlag.overflow | PageFlag.meta) == expected,
            flags & (PageFlag.leaf2 | PageFlag.subPage) == 0
        else {
            throw Damage(
                description: "page \(number) of the \(name) has flags 0x\(String(flags, radix: 16)), "
                    + "expected a \(isLeaf ? "leaf" : "branch") page")
        }
        let lower = Int(page.u16(at: 12))
        let upper = Int(page.u16(at: 14))
        guard lower >= Self.headerSize, lower <= upper, upper <= pageSize, (lower - Self.headerSize) % 2 == 0 else {
            throw Damage(description: "page \(number) of the \(name) has free-space bounds \(lower)..\(upper)")
        }
        let count = (lower - Self.headerSize) / 2
        guard isLeaf || count >= 1 else { throw Damage(description: "branch page \(number) of the \(name) is empty") }
        for index in 0..<count {
            let offset = Int(page.u16(at: Self.headerSize + 2 * index))
            guard offset >= upper, offset + Self.nodeHeaderSize <= pageSize else {
                throw Damage(description: "node \(index) of page \(number) (\(name)) lies outside its page")
            }
            let low = UInt64(page.u16(at: offset))
            let high = UInt64(page.u16(at: offset + 2))
            let nodeFlags = page.u16(at: offset + 4)
            let keySize = Int(page.u16(at: offset + 6))
            let keyStart = offset + Self.nodeHeaderSize
            guard keyStart + keySize <= pageSize else {
                throw Damage(description: "a key on page \(number) (\(name)) runs past its page")
            }
            if !isLeaf {
                let child = low | high << 16 | UInt64(nodeFlags) << 32
                try walkPage(child, level: level + 1, depth: depth, name: name, kind: kind)
                continue
            }
            let dataSize = Int(low | high << 16)
            let dataStart = keyStart + keySize
            let key = page.bytes(keyStart, keySize)
            guard nodeFlags & NodeFlag.dupData == 0 else {
                throw Damage(
                    description: "page \(number) (\(name)) holds duplicate data, which no Outpost database has")
            }
            if nodeFlags & NodeFlag.bigData != 0 {
                guard dataStart + 8 <= pageSize else {
                    throw Damage(description: "a value on page \(number) (\(name)) runs past its page")
                }
                let first = page.u64(at: dataStart)
                try checkOverflow(first, size: dataSize, name: name)
                try visit(key, Value(overflow: (first, dataSize)), kind: kind)
                continue
            }
            guard dataStart + dataSize <= pageSize else {
                throw Damage(description: "a value on page \(number) (\(name)) runs past its page")
            }
            var value = Value(inline: page.bytes(dataStart, dataSize))
            if nodeFlags & NodeFlag.subData != 0 {
                guard dataSize == 48 else {
                    throw Damage(
                        description:
                            "the database record \"\(String(decoding: key, as: UTF8.self))\" is \(dataSize) bytes")
                }
                value.tree = Tree(page, at: dataStart)
            }
            try visit(key, value, kind: kind)
        }
    }

    /// A branch or leaf page: inside the file, carrying its own number, reached once.
    private mutating func treePage(_ number: UInt64, name: String) throws -> PageBytes {
        try claim(number, pages: 1, name: name)
        try requireInFile(number, pages: 1, name: name)
        let page = try read(at: number * UInt64(pageSize), count: pageSize)
        guard page.u64(at: 0) == number else {
            throw Damage(description: "page \(number) of the \(name) says it is page \(page.u64(at: 0))")
        }
        summary.treePages += 1
        return page
    }

    /// The overflow pages of a large value: inside the file, headed by an overflow page that
    /// carries its own number and counts at least the pages the value needs.
    private mutating func checkOverflow(_ first: UInt64, size: Int, name: String) throws {
        let needed = UInt64((Self.headerSize - 1 + size) / pageSize + 1)
        try claim(first, pages: needed, name: name)
        try requireInFile(first, pages: needed, name: name)
        let header = try read(at: first * UInt64(pageSize), count: Self.headerSize)
        let pages = UInt64(header.u32(at: 12))
        guard header.u64(at: 0) == first, header.u16(at: 10) & PageFlag.overflow != 0, pages >= needed else {
            throw Damage(description: "the \(size)-byte value at page \(first) (\(name)) has a damaged overflow header")
        }
        summary.overflowPages += Int(needed)
    }

    /// A free-list value: a count followed by that many page numbers, each inside the file and
    /// in no tree.
    private mutating func checkFreeList(_ value: Value) throws {
        var bytes: PageBytes
        if let inline = value.inline {
            bytes = PageBytes(bytes: inline)
        } else if let (page, size) = value.overflow {
            bytes = try read(at: page * UInt64(pageSize) + UInt64(Self.headerSize), count: size)
        } else {
            return
        }
        guard bytes.count >= 8, bytes.count % 8 == 0 else {
            throw Damage(description: "a free-page list entry is \(bytes.count) bytes")
        }
        let count = bytes.u64(at: 0)
        guard count <= UInt64(bytes.count / 8 - 1) else {
            throw Damage(description: "a free-page list entry counts \(count) pages in \(bytes.count) bytes")
        }
        for index in 0..<Int(count) {
            try claim(bytes.u64(at: 8 + 8 * index), pages: 1, name: "free-page list")
            summary.freePages += 1
        }
    }

    /// Marks pages `first ..< first + pages` as reached; throws if one is past the last page
    /// in use or was reached before.
    private mutating func claim(_ first: UInt64, pages: UInt64, name: String) throws {
        let end = first.addingReportingOverflow(pages)
        guard first >= 2, !end.overflow, end.partialValue - 1 <= lastPage else {
            throw Damage(
                description:
                    "the \(name) points to page \(first) (\(pages) page(s)); the last page in use is \(lastPage)")
        }
        for page in first..<end.partialValue {
            let (word, bit) = (Int(page / 64), page % 64)
            guard seen[word] & (1 << bit) == 0 else {
                throw Damage(description: "page \(page) is reached twice (\(name))")
            }
            seen[word] |= 1 << bit
        }
    }

    /// Pages a tree reaches must be in the file (liblmdb would touch them through the map:
    /// past the end of the file that is a SIGBUS).
    private func requireInFile(_ first: UInt64, pages: UInt64, name: String) throws {
        let end = (first + pages).multipliedReportingOverflow(by: UInt64(pageSize))
        guard !end.overflow, end.partialValue <= fileBytes else {
            throw Damage(
                description: "page \(first) of the \(name) lies past the end of the data file (\(fileBytes) bytes, "
                    + "\(fileBytes / UInt64(pageSize)) pages): the file was truncated")
        }
    }

    /// Whether another process has the environment open: it holds a lock on `lock.mdb`
    /// (liblmdb takes one in every process that opens it). Asked with F_GETLK, which takes
    /// nothing; locks held by this process do not count.
    static func isOpenElsewhere(lockFile: String) -> Bool {
        let descriptor = open(lockFile, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var probe = flock()
        probe.l_type = Int16(F_WRLCK)
        probe.l_whence = Int16(SEEK_SET)
        probe.l_start = 0
        probe.l_len = 1
        guard fcntl(descriptor, F_GETLK, &probe) == 0 else { return false }
        return probe.l_type != Int16(F_UNLCK)
    }

    private mutating func mark(_ page: UInt64) { seen[Int(page / 64)] |= 1 << (page % 64) }

    private func read(at offset: UInt64, count: Int) throws -> PageBytes {
        guard offset.addingReportingOverflow(UInt64(count)).partialValue <= fileBytes else {
            throw Damage(
                description: "a read of \(count) bytes at \(offset) is past the end of the file (\(fileBytes) bytes)")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if got < 0, errno == EINTR { continue }
            guard got > 0 else {
                throw Damage(
                    description:
                        "reading the data file at \(offset) failed: \(got < 0 ? String(cString: strerror(errno)) : "end of file")"
                )
            }
            done += got
        }
        return PageBytes(bytes: bytes)
    }
}

/// Little-endian fields of a page read from the file; reads past the end give zero (callers
/// bound their offsets first, so this never decides anything).
private struct PageBytes {
    var bytes: [UInt8]
    var count: Int { bytes.count }

    func u16(at offset: Int) -> UInt16 { UInt16(truncatingIfNeeded: integer(at: offset, size: 2)) }
    func u32(at offset: Int) -> UInt32 { UInt32(truncatingIfNeeded: integer(at: offset, size: 4)) }
    func u64(at offset: Int) -> UInt64 { integer(at: offset, size: 8) }
    func bytes(_ offset: Int, _ count: Int) -> [UInt8] { Array(bytes[offset..<offset + count]) }

    private func integer(at offset: Int, size: Int) -> UInt64 {
        guard offset >= 0, offset + size <= bytes.count else { return 0 }
        var value: UInt64 = 0
        for index in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + index]) }
        return value
    }
}

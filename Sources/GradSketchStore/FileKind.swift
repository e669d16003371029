import Synchronization

/// One kind of data file a store holds (Spec §2.6): where its files live, what their root
/// `encoding-type` is, which datasets they hold, and how a manifest lists them.
///
/// Every kind is declared once, in ``FileKinds``; `verify`, `vacuum`, the referenced-files
/// set of a version and the store's data directories all loop over the registered kinds, so
/// a new kind is one declaration (plus its writer, which goes through ``DataFileWriter``).
///
/// Adding a kind: add its `encoding-type` values to ``EncodingType`` (or name them as
/// strings), declare a `FileKind` (directory, datasets, `entries` reading its manifest
/// entries, optionally a `check` per entry for rules beyond the shared ones), append it to
/// ``FileKinds/builtIn``, write its files with ``DataFileWriter``, and add its row to Spec §2.6.
struct FileKind: Sendable {
    /// One dataset (or family of datasets) the kind's files hold.
    struct Dataset: Sendable {
        /// The dataset's path in the file; a name ending in `/` declares a family (every
        /// dataset under that group, e.g. `columns/` or `tensors/`).
        let name: String
        /// The dataset's `encoding-type` attribute (Spec §2.1).
        let encoding: String
        /// Whether every file of the kind MUST hold it.
        let required: Bool
        /// Whether its first dimension is the entry's ``Entry/rows`` (one element per row).
        let oneElementPerRow: Bool
        /// Whether the kind's own check reads and checksums the data (large data read once,
        /// through the path that also checks its layout); the generic check then looks only at
        /// the dataset's attributes and shape.
        let contentCheckedByKind: Bool

        init(_ name: String, _ encoding: EncodingType, required: Bool = true, oneElementPerRow: Bool = true, contentCheckedByKind: Bool = false) {
            self.init(name, encoding: encoding.rawValue, required: required, oneElementPerRow: oneElementPerRow, contentCheckedByKind: contentCheckedByKind)
        }

        init(_ name: String, encoding: String, required: Bool = true, oneElementPerRow: Bool = true, contentCheckedByKind: Bool = false) {
            self.name = name
            self.encoding = encoding
            self.required = required
            self.oneElementPerRow = oneElementPerRow
            self.contentCheckedByKind = contentCheckedByKind
        }

        var isFamily: Bool { name.hasSuffix("/") }

        func matches(_ dataset: String) -> Bool {
            // As bytes (Spec §2.5), like every name of the format.
            isFamily ? dataset.utf8.starts(with: name.utf8) && dataset.utf8.count > name.utf8.count : dataset.utf8.elementsEqual(name.utf8)
        }
    }

    /// One file as a manifest lists it.
    struct Entry: Sendable {
        /// Relative to the store root.
        let file: String
        let size: Int?
        let fileChecksum: String?
        /// CRC-32C of each dataset, by dataset path. A list, not a dictionary: dataset paths
        /// are compared as bytes (Spec §2.5), so tensors `café` in NFC and in NFD are two.
        let datasetChecksums: [(name: String, checksum: String)]
        /// Elements of each one-per-row dataset; nil when the kind has none.
        let rows: Int?
        /// What `verify` checks beyond the generic rules (layout, ranges, cross-file rules),
        /// with what it needs from the manifest captured; returns the problems found.
        let check: (@Sendable (Store) -> [KindProblem])?
    }

    /// A problem a kind's own check found: the dataset, if that precise, and the message.
    struct KindProblem: Sendable {
        let object: String?
        let message: String
    }

    /// Short name, for messages (`segment`, `deletion list`, …).
    let name: String
    /// The store directory its files live in (Spec §1).
    let directory: String
    /// The root `encoding-type` of its files.
    let encoding: String
    let datasets: [Dataset]
    /// Every file of the kind one version references.
    let entries: @Sendable (Manifest) -> [Entry]

    func dataset(named name: String) -> Dataset? { datasets.first { $0.matches(name) } }
}

/// The registry of file kinds (Spec §2.6), built-in ones first.
enum FileKinds {
    private static let registry = Mutex<[FileKind]>(builtIn)

    /// Every registered kind, in registration order (verify reports problems in this order).
    static var all: [FileKind] { registry.withLock { $0 } }

    /// Adds a kind (or replaces the one of the same name): from then on it is verified,
    /// vacuumed and counted as referenced like the built-in ones.
    static func register(_ kind: FileKind) {
        registry.withLock { kinds in
            if let index = kinds.firstIndex(where: { $0.name == kind.name }) { kinds[index] = kind } else { kinds.append(kind) }
        }
    }

    static func kind(named name: String) -> FileKind? { all.first { $0.name == name } }

    /// The directories data files live in, one per kind.
    static var directories: [String] {
        var seen = Set<String>()
        return all.map(\.directory).filter { seen.insert($0).inserted }
    }

    /// Every data file `manifest` references, relative to the store root.
    static func referencedFiles(in manifest: Manifest) -> Set<String> {
        Set(all.flatMap { $0.entries(manifest).map(\.file) })
    }

    static let builtIn: [FileKind] = [segment, deletions, tensors, index, result, segmentList, partQuantizer, indexPart]

    static let segment = FileKind(
        name: "segment", directory: "segments", encoding: EncodingType.sketchSegment.rawValue,
        datasets: [
            // Rows: read once, with their layout and finiteness; ids: read once, with the id rules.
            .init("rows", .denseRows, contentCheckedByKind: true),
            .init("ids", .rowIDs, contentCheckedByKind: true),
            .init("labels", .rowLabels, required: false),
            .init("metadata", .rowMetadata, required: false),
            .init("columns/", .rowColumn, required: false),
            // Format 1.2: the sorted id hash table (Spec §5.1); checked against the ids by the kind.
            .init(SegmentFiles.idHashes, .rowIDHashes, required: false),
            .init(SegmentFiles.idHashRows, .rowIDHashRows, required: false),
        ],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                set.segments.map { segment in
                    let (k, dtype, allowNonfinite) = (set.k, SketchDType(rawValue: set.dtype) ?? .float32, set.allowNonfinite)
                    return FileKind.Entry(file: segment.file, size: segment.size, fileChecksum: segment.fileChecksum,
                                          datasetChecksums: segment.checksums.map { ($0.key, $0.value) }, rows: segment.rows) { store in
                        store.checkSegment(segment, k: k, dtype: dtype, allowNonfinite: allowNonfinite)
                    }
                }
            }
        })

    static let deletions = FileKind(
        name: "deletion list", directory: "deletions", encoding: EncodingType.rowDeletions.rawValue,
        datasets: [.init("rows", .deletedRows)],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                set.segments.compactMap { segment -> FileKind.Entry? in
                    guard let deletions = segment.deletions else { return nil }
                    return FileKind.Entry(file: deletions.file, size: deletions.size, fileChecksum: deletions.fileChecksum,
                                          datasetChecksums: [("rows", deletions.checksum)], rows: deletions.count) { store in
                        do { _ = try SegmentFiles.readDeletions(storePath: store.path, entry: deletions, segment: segment) } catch {
                            return [.init(object: "rows", message: FileKinds.describe(error))]
                        }
                        return []
                    }
                }
            }
        })

    static let tensors = FileKind(
        name: "tensor set", directory: "tensors", encoding: EncodingType.tensorSet.rawValue,
        datasets: [.init("tensors/", .tensor, required: false, oneElementPerRow: false, contentCheckedByKind: true)],
        entries: { manifest in
            manifest.tensorSets.values.map { set in
                let checksums = set.tensors.map { ("tensors/" + TensorFiles.datasetName($0.name), $0.checksum) }
                return FileKind.Entry(file: set.file, size: set.size, fileChecksum: set.fileChecksum,
                                      datasetChecksums: checksums, rows: nil) { store in store.checkTensorSet(set) }
            }
        })

    static let index = FileKind(
        name: "index", directory: "indexes", encoding: EncodingType.ivfIndex.rawValue,
        datasets: [
            // IndexFiles.load reads and checksums every dataset of an index in one pass.
            .init("centroids", .ivfCentroids, oneElementPerRow: false, contentCheckedByKind: true),
            .init("list-offsets", .ivfListOffsets, oneElementPerRow: false, contentCheckedByKind: true),
            .init("codes", .ivfCodes, contentCheckedByKind: true),
            .init("code-scales", .ivfCodeScales, contentCheckedByKind: true),
            .init("positions", .ivfRowPositions, contentCheckedByKind: true),
        ],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                set.indexes.filter { $0.value.parts == nil }.map { name, index in
                    let physicalRows = set.segments.filter { index.segments.contains($0.file) }.reduce(0) { $0 + $1.rows }
                    let k = set.k
                    return FileKind.Entry(file: index.file, size: index.size, fileChecksum: index.fileChecksum,
                                          datasetChecksums: index.checksums.map { ($0.key, $0.value) }, rows: index.rows) { store in
                        store.checkIndex(name, index, k: k, physicalRows: physicalRows)
                    }
                }
            }
        })

    static let result = FileKind(
        name: "result", directory: "results", encoding: EncodingType.result.rawValue,
        datasets: [
            .init("ids", .rowIDs),
            .init("positions", .resultPositions),
            .init("scores", .resultScores),
            // Format 1.2 (Spec §11): the rows' addresses; absent from 1.1 results.
            .init("segments", .resultSegments, required: false, oneElementPerRow: false),
            .init("addresses", .resultAddresses, required: false),
        ],
        entries: { manifest in
            (manifest.results ?? [:]).map { name, entry in
                FileKind.Entry(file: entry.file, size: entry.size, fileChecksum: entry.fileChecksum,
                               datasetChecksums: entry.checksums.map { ($0.key, $0.value) }, rows: entry.count) { store in
                    store.checkResult(name, entry)
                }
            }
        })

    static func describe(_ error: any Error) -> String {
        (error as? StoreError)?.message ?? "\(error)"
    }

    /// Format 1.2 segment lists (Spec §7.1): a run of a set's segment entries as JSON, with the
    /// id hash table of all their rows.
    static let segmentList = FileKind(
        name: "segment list", directory: SegmentLists.directory, encoding: EncodingType.segmentList.rawValue,
        datasets: [
            .init(SegmentLists.entriesDataset, .segmentListJSON, oneElementPerRow: false, contentCheckedByKind: true),
            .init(SegmentLists.hashesDataset, .rowIDHashes, contentCheckedByKind: true),
            .init(SegmentLists.positionsDataset, .segmentListPositions, contentCheckedByKind: true),
        ],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                var start = 0
                return (set.segmentLists ?? []).map { list in
                    let end = min(set.segments.count, start + list.count)
                    let covered = Array(set.segments[start..<end])
                    start = end
                    return FileKind.Entry(file: list.file, size: list.size, fileChecksum: list.fileChecksum,
                                          datasetChecksums: list.checksums.map { ($0.key, $0.value) }, rows: list.rows) { store in
                        store.checkSegmentList(list, covering: covered)
                    }
                }
            }
        })

    /// `ivf-rq4` quantizer files (Spec §10.3); the check also reads every part's positions to
    /// check that no row is indexed twice across parts.
    static let partQuantizer = FileKind(
        name: "index quantizer", directory: "indexes", encoding: EncodingType.ivfRQ4Quantizer.rawValue,
        datasets: [
            .init("centroids", .ivfCentroids, oneElementPerRow: false, contentCheckedByKind: true),
            .init("group-centroids", .ivfGroupCentroids, oneElementPerRow: false, contentCheckedByKind: true),
            .init("group-offsets", .ivfGroupOffsets, oneElementPerRow: false, contentCheckedByKind: true),
        ],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                set.indexes.filter { $0.value.parts != nil }.map { name, index in
                    let k = set.k
                    return FileKind.Entry(file: index.file, size: index.size, fileChecksum: index.fileChecksum,
                                          datasetChecksums: index.checksums.map { ($0.key, $0.value) }, rows: nil) { store in
                        store.checkPartQuantizer(name, index, k: k)
                    }
                }
            }
        })

    /// `ivf-rq4` part files (Spec §10.3). Two versions' entries may name the same part (an
    /// update keeps the old parts); each is checked per version like any other file.
    static let indexPart = FileKind(
        name: "index part", directory: "indexes", encoding: EncodingType.ivfRQ4Part.rawValue,
        datasets: [
            .init("list-offsets", .ivfListOffsets, oneElementPerRow: false, contentCheckedByKind: true),
            .init("codes", .ivfRQ4Codes, contentCheckedByKind: true),
            .init("lows", .ivfRQ4Lows, contentCheckedByKind: true),
            .init("steps", .ivfRQ4Steps, contentCheckedByKind: true),
            .init("positions", .ivfRowPositions, contentCheckedByKind: true),
        ],
        entries: { manifest in
            manifest.sketchSets.values.flatMap { set in
                set.indexes.values.flatMap { index -> [FileKind.Entry] in
                    guard let parts = index.parts else { return [] }
                    let physicalRows = set.segments.filter { index.segments.contains($0.file) }.reduce(0) { $0 + $1.rows }
                    let (k, lists) = (set.k, index.lists)
                    return parts.map { part in
                        FileKind.Entry(file: part.file, size: part.size, fileChecksum: part.fileChecksum,
                                       datasetChecksums: part.checksums.map { ($0.key, $0.value) }, rows: part.rows) { store in
                            store.checkIndexPart(part, k: k, lists: lists, physicalRows: physicalRows)
                        }
                    }
                }
            }
        })
}

import COpenBLAS
import Dispatch
import Foundation
import GradSketchInterchange
public import GradSketchStore

/// How an `ivf-rq4` index (Spec §10.3) is built, updated and tuned.
public struct PartIndexOptions: Sendable {
    public var metric: SearchMetric = .innerProduct
    /// Lists; nil chooses as `ivf-int8` does (the power of two nearest 2·√N, at most N/32).
    public var lists: Int?
    /// Upper-level groups of the coarse quantizer; nil chooses ⌈√lists⌉.
    public var groups: Int?
    /// Physical rows a part covers at most (a part holds whole segments, so a segment larger
    /// than this is a part of its own). Bounds the build's memory: one part's codes at a time.
    public var partRows: Int = 1 << 22
    /// Rows k-means trains on; nil takes 64 per list, at most 2²⁰ (all rows when fewer).
    public var trainingRows: Int?
    public var iterations: Int = 20
    /// Seeded orthogonal rotation before 4-bit coding (RaBitQ-style).
    public var rotation: Bool = true
    public var recallTarget: Double = 0.95
    public var tuningQueries: Int = 200
    /// Candidates re-ranked exactly at k = 10. nil tunes it: at the tuned nprobe, the smallest
    /// of 16, 24, 32, 48 whose held-out recall stays at the target and within 0.005 of
    /// `tunedRerankCeiling`'s, else the ceiling (each re-ranked candidate is a random read of
    /// a stored row, the largest per-query cost after the scan).
    public var rerank: Int?
    public static let tunedRerankCeiling = 64
    /// Groups probed by default; nil chooses ⌈groups / 4⌉ (at least 1).
    public var groupProbe: Int?
    public var seed: UInt64 = 0
    public var threads: Int = 2
    /// Train lists within groups (``CoarseQuantizer/trainTwoLevel(points:count:width:lists:groups:iterations:seed:)``)
    /// instead of flat k-means over all lists; nil: two-level from `twoLevelFromLists` lists on.
    public var twoLevelTraining: Bool?
    public static let twoLevelFromLists = 4096
    /// Nearest groups whose lists a row may be coded into; nil: 8 (every group when the
    /// quantizer has fewer than 16, where scanning all lists costs little).
    public var assignGroupProbe: Int?

    public init() {}
}

/// What a build, update or merge did (contract §6): parameters, tuning, time per phase, peak
/// memory and bytes.
public struct PartIndexReport: Sendable, Codable {
    public let operation: String
    public let version: Int
    public let name: String
    public let kind: String
    public let metric: String
    public let lists: Int
    public let groups: Int
    public let rows: Int
    /// Rows coded by this operation (all rows for a build, new rows for an update, none for a merge).
    public let rowsCoded: Int
    public let parts: Int
    public let partsWritten: Int
    public let defaultNprobe: Int
    public let groupProbe: Int
    public let rerank: Int
    public let recallTarget: Double
    public let tuning: [IVFBuildReport.TuningPoint]
    public let seconds: [String: Double]
    /// getrusage(RUSAGE_SELF) ru_maxrss at the end, in bytes (the process's peak, so it includes
    /// whatever ran before in the same process).
    public let peakRSSBytes: Int
    /// The working-memory bound of ``PartIndexBuilder/memoryBound(rows:width:lists:groups:trainingRows:)``.
    public let memoryBoundBytes: Int
    public let memoryFormula: String
    public let indexBytes: Int
    /// How rows were given their lists: "exact" (nearest of all lists) or "N of G groups".
    public let assignment: String
    /// Of the rows checked (the first 4,096 of each part coded), the share whose list differs
    /// from the nearest of all lists; 0 for exact assignment.
    public let misassignedShare: Double
}

public enum PartIndexBuilder {
    /// Working memory of a build in bytes (the set's rows are mapped, not counted): the
    /// training sample T·k·4 and its k-means scratch (T·4 + L·k·8), the quantizer L·k·4 +
    /// G·k·4, and one part of P rows: list ids P·4, codes P·⌈k/2⌉, lows, steps and positions
    /// P·16, plus one 4096-row float chunk.
    public static func memoryBound(rows partRows: Int, width: Int, lists: Int, groups: Int, trainingRows: Int) -> Int {
        let training = trainingRows * width * 4 + trainingRows * 4 + lists * width * 8
        let quantizer = lists * width * 4 + groups * width * 4
        let part = partRows * (4 + (width + 1) / 2 + 16)
        return training + quantizer + part + 4096 * width * 4
    }

    static let memoryFormula = "T·k·4 + T·4 + L·k·8 + (L + G)·k·4 + P·(⌈k/2⌉ + 20) + 4096·k·4 (T training rows, L lists, G groups, P rows per part)"

    /// Builds an `ivf-rq4` index over every live row of `set` (its version as read): trains the
    /// two-level coarse quantizer on a sample, codes the rows part by part (contiguous runs of
    /// segments of at most `options.partRows` rows), tunes nprobe on held-out rows, and commits
    /// quantizer and parts as one version.
    public static func build(_ set: SketchSet, in store: Store, name: String, options: PartIndexOptions = PartIndexOptions(),
                             progress: ((String) -> Void)? = nil) throws -> PartIndexReport {
        let width = set.k
        let live = set.rowCount
        guard live >= 2 else {
            throw StoreError(.invalidInput, "set \(set.name) has \(live) live rows: an index needs at least 2")
        }
        let lists = options.lists ?? IVFIndexBuilder.defaultLists(rows: live)
        guard lists >= 1, lists <= live else {
            throw StoreError(.invalidInput, "an index over \(live) rows needs between 1 and \(live) lists, found \(lists)")
        }
        let groups = options.groups ?? Int(Double(lists).squareRoot().rounded(.up))
        guard groups >= 1, groups <= lists else {
            throw StoreError(.invalidInput, "an index of \(lists) lists needs between 1 and \(lists) groups, found \(groups)")
        }
        guard (0.0...1.0).contains(options.recallTarget), options.partRows >= 1, (options.rerank ?? 1) >= 1 else {
            throw StoreError(.invalidInput, "recall target must be in 0...1 (found \(options.recallTarget)), part rows and rerank at least 1 (found \(options.partRows), \(options.rerank ?? 0))")
        }
        var clock = PhaseClock()
        var random = SeededRandom(seed: options.seed)
        let mostRerank = options.rerank ?? PartIndexOptions.tunedRerankCeiling
        let claim = try store.claimWrites()
        defer { claim.release() }

        // Held-out tuning rows and a training sample, drawn without materialising a permutation
        // of all rows (10⁸ positions would be 800 MB).
        let tuningCount = min(options.tuningQueries, max(1, live / 10))
        let trainingCount = min(live - tuningCount, options.trainingRows ?? max(lists, min(64 * lists, 1 << 20)))
        guard trainingCount >= lists else {
            throw StoreError(.invalidInput, "\(lists) lists need at least as many training rows; \(live) rows leave \(live - tuningCount)")
        }
        let sample = distinctSample(count: tuningCount + trainingCount, from: live, random: &random)
        let heldOut = Array(sample.prefix(tuningCount))
        let trainingPositions = Array(sample.dropFirst(tuningCount)).sorted()

        progress?("training \(lists) lists in \(groups) groups on \(trainingCount) rows")
        var training = try set.floatRows(at: trainingPositions)
        if options.metric == .cosine { IVFIndexBuilder.normalizeRows(&training, width: width) }
        let twoLevel = options.twoLevelTraining ?? (lists >= PartIndexOptions.twoLevelFromLists)
        let quantizer = twoLevel
            ? CoarseQuantizer.trainTwoLevel(points: training, count: trainingCount, width: width, lists: lists, groups: groups,
                                            iterations: options.iterations, seed: random.next())
            : CoarseQuantizer.train(points: training, count: trainingCount, width: width, lists: lists, groups: groups,
                                    iterations: options.iterations, seed: random.next(), threads: options.threads)
        let assignGroupProbe = options.assignGroupProbe.map { min(max($0, 1), groups) } ?? (groups < 16 ? groups : 8)
        training = []
        let rotationSeed: UInt64? = options.rotation ? random.next() : nil
        let coder = FourBitCoder(width: width, rotationSeed: rotationSeed)
        clock.lap("train")

        let quantizerFile = try store.writePartQuantizer(for: set, metric: options.metric.rawValue, arrays: PartQuantizerArrays(
            centroids: quantizer.centroids, groupCentroids: quantizer.groupCentroids,
            groupOffsets: quantizer.groupOffsets.map(Int64.init), rotationSeed: rotationSeed))
        var written = [quantizerFile.file]
        do {
            let partPlan = planParts(set, segments: 0..<set.segments.count, partRows: options.partRows)
            var parts: [Manifest.IndexPartEntry] = []
            var checked = MisassignmentCount()
            for (number, run) in partPlan.enumerated() {
                progress?("coding part \(number + 1) of \(partPlan.count): segments \(run.lowerBound)..<\(run.upperBound)")
                let (part, misassigned) = try codePart(set, segments: run, quantizer: quantizer, coder: coder, metric: options.metric,
                                                       store: store, threads: options.threads, assignGroupProbe: assignGroupProbe)
                parts.append(part)
                written.append(part.file)
                checked.add(misassigned)
            }
            clock.lap("code")

            progress?("tuning nprobe on \(tuningCount) held-out rows")
            let loaded = try parts.map { try StoredIndexPart.open(storePath: store.path, entry: $0, k: width, lists: lists, set: set.name) }
            let searcher = try PartIndexSearcher(set: set, quantizer: quantizer, coder: coder, parts: loaded, metric: options.metric,
                                                 coveredSegments: parts.reduce(0) { $0 + $1.segments.count }, indexName: name,
                                                 defaults: PartSearchParameters(nprobe: 1, rerank: mostRerank, groupProbe: nil), tuning: [])
            let queries = try set.floatRows(at: heldOut)
            let truth = try ExactSearch.search(set, queries: queries, count: tuningCount, metric: options.metric, k: 11, threads: options.threads)
            func recall(nprobe: Int, groupProbe: Int?, rerank: Int? = nil) throws -> Double {
                let found = try searcher.search(queries: queries, count: tuningCount, k: 11,
                                                parameters: PartSearchParameters(nprobe: nprobe, rerank: rerank ?? mostRerank, groupProbe: groupProbe),
                                                threads: options.threads)
                return IVFIndexBuilder.meanRecall(found: found, truth: truth, excluding: heldOut, k: 10)
            }
            // First nprobe with every group considered (the recall the lists allow), then the
            // fewest groups that keep the target at that nprobe.
            var tuning: [IVFBuildReport.TuningPoint] = []
            for nprobe in IVFIndexBuilder.probeSchedule(lists: lists) {
                let reached = try recall(nprobe: nprobe, groupProbe: nil)
                tuning.append(.init(nprobe: nprobe, recall: reached))
                if reached >= 0.999 { break }
            }
            let chosen = tuning.first { $0.recall >= options.recallTarget }?.nprobe ?? lists
            var groupProbe = groups
            var groupTuning: [(groupProbe: Int, recall: Double)] = []
            if let asked = options.groupProbe {
                groupProbe = min(max(1, asked), groups)
            } else if chosen < lists {
                for candidate in IVFIndexBuilder.probeSchedule(lists: groups) where candidate < groups {
                    let reached = try recall(nprobe: chosen, groupProbe: candidate)
                    groupTuning.append((candidate, reached))
                    if reached >= options.recallTarget { groupProbe = candidate; break }
                }
            }
            var rerank = mostRerank
            var rerankTuning: [(rerank: Int, recall: Double)] = []
            if options.rerank == nil && chosen < lists {
                let most = try recall(nprobe: chosen, groupProbe: groupProbe)
                rerankTuning.append((mostRerank, most))
                for candidate in [16, 24, 32, 48] where candidate < mostRerank {
                    let reached = try recall(nprobe: chosen, groupProbe: groupProbe, rerank: candidate)
                    rerankTuning.append((candidate, reached))
                    if reached >= options.recallTarget && reached >= most - 0.005 { rerank = candidate; break }
                }
            }
            clock.lap("tune")

            progress?("committing")
            let parameters: [String: JSONValue] = [
                "default_nprobe": .number(Double(chosen)),
                "group_probe": .number(Double(groupProbe)),
                "groups": .number(Double(groups)),
                "rerank": .number(Double(rerank)),
                "rerank_tuning": .array(rerankTuning.map { .object(["rerank": .number(Double($0.rerank)), "recall": .number($0.recall)]) }),
                "recall_target": .number(options.recallTarget),
                "tuning_queries": .number(Double(tuningCount)),
                "training_rows": .number(Double(trainingCount)),
                "iterations": .number(Double(options.iterations)),
                "part_rows": .number(Double(options.partRows)),
                "seed": JSONValue(options.seed),
                "training": .string(twoLevel ? "two-level" : "flat"),
                "assign_group_probe": .number(Double(assignGroupProbe)),
                "quantizer_built_on_version": .number(Double(set.version)),
                "tuning": .array(tuning.map { .object(["nprobe": .number(Double($0.nprobe)), "recall": .number($0.recall)]) }),
                "group_tuning": .array(groupTuning.map { .object(["group_probe": .number(Double($0.groupProbe)), "recall": .number($0.recall)]) }),
            ]
            let version = try store.commitPartIndex(name, over: set, metric: options.metric.rawValue, quantizer: quantizerFile,
                                                    parts: parts, lists: lists, parameters: parameters)
            clock.lap("commit")
            let bound = memoryBound(rows: partPlan.map { run in set.segments[run].reduce(0) { $0 + $1.entry.rows } }.max() ?? 0,
                                    width: width, lists: lists, groups: groups, trainingRows: trainingCount)
            return PartIndexReport(operation: "build", version: version, name: name, kind: PartIndexKind.name, metric: options.metric.rawValue,
                                   lists: lists, groups: groups, rows: parts.reduce(0) { $0 + $1.rows }, rowsCoded: live, parts: parts.count,
                                   partsWritten: parts.count, defaultNprobe: chosen, groupProbe: groupProbe, rerank: rerank,
                                   recallTarget: options.recallTarget, tuning: tuning, seconds: clock.seconds, peakRSSBytes: peakRSSBytes(),
                                   memoryBoundBytes: bound, memoryFormula: memoryFormula,
                                   indexBytes: quantizerFile.size + parts.reduce(0) { $0 + ($1.size ?? 0) },
                                   assignment: assignmentText(assignGroupProbe, groups: groups), misassignedShare: checked.share)
        } catch {
            for file in written { try? FileManager.default.removeItem(atPath: store.path + "/" + file) }
            throw error
        }
    }

    /// Indexes the segments after index `name`'s covered prefix as new parts, reusing its
    /// quantizer and coder (cost ∝ new rows), and commits the index with the old parts kept.
    public static func update(_ set: SketchSet, in store: Store, name: String, options: PartIndexOptions = PartIndexOptions(),
                              progress: ((String) -> Void)? = nil) throws -> PartIndexReport {
        var clock = PhaseClock()
        let (entry, stored, oldParts) = try set.partIndex(name)
        guard let covered = set.coveredSegmentCount(of: entry) else {
            throw StoreError(.conflict, "index \(name) of set \(set.name) was built on segments that version \(set.version) no longer starts with (compacted?): rebuild it with `gradsketch index build --kind \(PartIndexKind.name)`")
        }
        let quantizer = try CoarseQuantizer(width: set.k, centroids: stored.centroids, groupCentroids: stored.groupCentroids,
                                            groupOffsets: stored.groupOffsets)
        let coder = FourBitCoder(width: set.k, rotationSeed: stored.rotationSeed)
        guard let metric = SearchMetric(rawValue: entry.metric) else {
            throw StoreError(.unsupportedVersion, "index \(name) has metric \"\(entry.metric)\": expected ip or cosine")
        }
        let partRows = entry.parameters["part_rows"]?.intValue ?? options.partRows
        let claim = try store.claimWrites()
        defer { claim.release() }
        let plan = planParts(set, segments: covered..<set.segments.count, partRows: partRows)
        var newParts: [Manifest.IndexPartEntry] = []
        // As the build did (indexes from before the option assigned exactly).
        let assignGroupProbe = min(max(entry.parameters["assign_group_probe"]?.intValue ?? quantizer.groups, 1), quantizer.groups)
        var checked = MisassignmentCount()
        do {
            for (number, run) in plan.enumerated() {
                progress?("coding new part \(number + 1) of \(plan.count): segments \(run.lowerBound)..<\(run.upperBound)")
                let (part, misassigned) = try codePart(set, segments: run, quantizer: quantizer, coder: coder, metric: metric, store: store,
                                                       threads: options.threads, assignGroupProbe: assignGroupProbe)
                newParts.append(part)
                checked.add(misassigned)
            }
            clock.lap("code")
            let version: Int
            if newParts.isEmpty {
                version = set.version  // nothing new: no commit
            } else {
                version = try store.commitPartIndex(name, over: set, metric: entry.metric, quantizer: quantizerFile(of: entry),
                                                    parts: oldParts.map(\.entry) + newParts, lists: entry.lists, parameters: entry.parameters)
            }
            clock.lap("commit")
            return report("update", entry: entry, version: version, name: name, parts: oldParts.map(\.entry) + newParts,
                          written: newParts, rowsCoded: newParts.reduce(0) { $0 + $1.rows }, clock: clock, width: set.k,
                          boundRows: plan.map { run in set.segments[run].reduce(0) { $0 + $1.entry.rows } }.max() ?? 0,
                          assignment: assignmentText(assignGroupProbe, groups: quantizer.groups), misassignedShare: checked.share)
        } catch {
            for part in newParts { try? FileManager.default.removeItem(atPath: store.path + "/" + part.file) }
            throw error
        }
    }

    /// Combines the parts of index `name` into one, list by list (each list's entries of every
    /// part in part order), without re-coding; commits the index with the merged part.
    ///
    /// - Parameter smallerThan: merge only consecutive runs of parts with fewer rows than
    ///   this (runs of one part are left alone); nil merges every part into one.
    public static func merge(_ set: SketchSet, in store: Store, name: String, smallerThan: Int? = nil,
                             progress: ((String) -> Void)? = nil) throws -> PartIndexReport {
        var clock = PhaseClock()
        let (entry, _, parts) = try set.partIndex(name)
        guard set.coveredSegmentCount(of: entry) != nil else {
            throw StoreError(.conflict, "index \(name) of set \(set.name) was built on segments that version \(set.version) no longer starts with: rebuild it")
        }
        // Runs of consecutive parts to merge.
        var runs: [Range<Int>] = []
        if let limit = smallerThan {
            var start: Int? = nil
            for (index, part) in parts.enumerated() {
                if part.rows < limit { if start == nil { start = index } } else if let first = start { runs.append(first..<index); start = nil }
            }
            if let first = start { runs.append(first..<parts.count) }
            runs = runs.filter { $0.count >= 2 }
        } else if parts.count >= 2 {
            runs = [0..<parts.count]
        }
        let claim = try store.claimWrites()
        defer { claim.release() }
        var result: [Manifest.IndexPartEntry] = []
        var written: [Manifest.IndexPartEntry] = []
        var next = 0
        let lists = entry.lists, bytesPerRow = (set.k + 1) / 2
        do {
            for run in runs {
                result += parts[next..<run.lowerBound].map(\.entry)
                progress?("merging parts \(run.lowerBound)..<\(run.upperBound)")
                let merging = Array(parts[run])
                let rows = merging.reduce(0) { $0 + $1.rows }
                var merged = IndexPartArrays(listOffsets: [0], codes: [], lows: [], steps: [], positions: [])
                merged.codes.reserveCapacity(rows * bytesPerRow)
                merged.lows.reserveCapacity(rows); merged.steps.reserveCapacity(rows); merged.positions.reserveCapacity(rows)
                for part in merging { try part.verify(rows: 0..<part.rows) }
                for list in 0..<lists {
                    for part in merging {
                        let range = part.listOffsets[list]..<part.listOffsets[list + 1]
                        let (codes, lows, steps, positions) = part.unverifiedArrays
                        merged.codes += codes[(range.lowerBound * bytesPerRow)..<(range.upperBound * bytesPerRow)]
                        merged.lows += lows[range]
                        merged.steps += steps[range]
                        merged.positions += positions[range]
                    }
                    merged.listOffsets.append(Int64(merged.positions.count))
                }
                let part = try store.writeIndexPart(for: set, segments: merging.flatMap(\.entry.segments), lists: lists, arrays: merged)
                written.append(part)
                result.append(part)
                next = run.upperBound
            }
            result += parts[next...].map(\.entry)
            clock.lap("merge")
            let version = written.isEmpty ? set.version
                : try store.commitPartIndex(name, over: set, metric: entry.metric, quantizer: quantizerFile(of: entry), parts: result,
                                            lists: lists, parameters: entry.parameters)
            clock.lap("commit")
            return report("merge", entry: entry, version: version, name: name, parts: result, written: written, rowsCoded: 0,
                          clock: clock, width: set.k, boundRows: written.map(\.rows).max() ?? 0, assignment: "none (not re-coded)",
                          misassignedShare: 0)
        } catch {
            for part in written { try? FileManager.default.removeItem(atPath: store.path + "/" + part.file) }
            throw error
        }
    }

    /// Groups to consider at `nprobe` lists, from the tuned pair (`tunedNprobe`, `tunedGroupProbe`):
    /// the same share of groups per probed list, so probing more lists also widens the groups
    /// they may come from (at least the tuned number; all groups when every list is probed).
    public static func groupProbe(forNprobe nprobe: Int, tunedNprobe: Int, tunedGroupProbe: Int, lists: Int, groups: Int) -> Int {
        guard nprobe < lists else { return groups }
        let scaled = (tunedGroupProbe * nprobe + max(1, tunedNprobe) - 1) / max(1, tunedNprobe)
        return min(groups, max(1, tunedGroupProbe, scaled))
    }

    // MARK: - Parts

    /// Contiguous runs of `segments` of at most `partRows` physical rows each (a larger
    /// segment is a run of its own).
    static func planParts(_ set: SketchSet, segments range: Range<Int>, partRows: Int) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var start = range.lowerBound, rows = 0
        for index in range {
            let segmentRows = set.segments[index].entry.rows
            if index > start && rows + segmentRows > partRows {
                runs.append(start..<index)
                start = index
                rows = 0
            }
            rows += segmentRows
        }
        if start < range.upperBound { runs.append(start..<range.upperBound) }
        return runs
    }

    /// Codes the live rows of `segments` into one part file: pass 1 assigns every row to its
    /// list (and counts), pass 2 reads the rows again and codes each residual straight into its
    /// list's slot, so the part is held once (codes, lows, steps, positions) and never sorted.
    ///
    /// Rows are assigned through their `assignGroupProbe` nearest groups (exact when that is
    /// every group); the first chunk is also assigned exactly, to count how many rows got
    /// another list than the nearest of all (any list is a correct place for a row: its code
    /// is a residual from that list's centroid, so only recall at a given nprobe can suffer).
    static func codePart(_ set: SketchSet, segments run: Range<Int>, quantizer: CoarseQuantizer, coder: FourBitCoder,
                         metric: SearchMetric, store: Store, threads: Int,
                         assignGroupProbe: Int) throws -> (Manifest.IndexPartEntry, MisassignmentCount) {
        let width = set.k, lists = quantizer.lists, bytesPerRow = coder.bytesPerRow
        let rows = set.segments[run].reduce(0) { $0 + $1.entry.rows - $1.deletedCount }
        var assignment = [Int32](repeating: 0, count: rows)
        var chunk = [Float](repeating: 0, count: 4096 * width)
        // Rows are split among `threads` threads that each call GEMM; OpenBLAS's own threads on
        // top would oversubscribe the cores (measured: a quarter of the coding time went to
        // its threads yielding). Process-wide, so GEMMs elsewhere run on one thread meanwhile.
        let blasThreads = openblas_get_num_threads()
        if threads > 1 { openblas_set_num_threads(1) }
        defer { if threads > 1 { openblas_set_num_threads(blasThreads) } }
        var slot = 0
        var misassigned = MisassignmentCount()
        let throughGroups = assignGroupProbe < quantizer.groups
        try set.forEachLiveChunk(segments: run, rows: 4096) { block, _ in
            let n = block.count / width
            chunk.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: block.baseAddress!, count: n * width) }
            if metric == .cosine { IVFIndexBuilder.normalizeRows(&chunk, width: width, count: n) }
            chunk.withUnsafeBufferPointer { points in
                assignment.withUnsafeMutableBufferPointer { a in
                    quantizer.assign(points.baseAddress!, count: n, into: a.baseAddress! + slot, threads: threads,
                                     groupProbe: assignGroupProbe)
                    if throughGroups && slot == 0 {
                        var exact = [Int32](repeating: 0, count: n)
                        quantizer.assign(points.baseAddress!, count: n, into: &exact, threads: threads)
                        misassigned.checked = n
                        misassigned.differing = (0..<n).filter { exact[$0] != a[$0] }.count
                    }
                }
            }
            slot += n
        }
        guard slot == rows else {
            throw StoreError(.corrupt, "segments \(run) of set \(set.name) yielded \(slot) live rows, the manifest says \(rows)")
        }
        var offsets = [Int64](repeating: 0, count: lists + 1)
        for list in assignment { offsets[Int(list) + 1] += 1 }
        for list in 0..<lists { offsets[list + 1] += offsets[list] }
        var next = offsets.dropLast().map(Int.init)
        var codes = [UInt8](repeating: 0, count: rows * bytesPerRow)
        var lows = [Float](repeating: 0, count: rows), steps = [Float](repeating: 0, count: rows)
        var rowPositions = [Int64](repeating: 0, count: rows)
        var destinations = [Int](repeating: 0, count: 4096)
        slot = 0
        try set.forEachLiveChunk(segments: run, rows: 4096) { block, positions in
            let n = positions.count
            chunk.withUnsafeMutableBufferPointer { $0.baseAddress!.update(from: block.baseAddress!, count: n * width) }
            if metric == .cosine { IVFIndexBuilder.normalizeRows(&chunk, width: width, count: n) }
            // Slots in order (so each list keeps its rows in set order), then the coding of
            // distinct slots split among threads.
            for i in 0..<n {
                let list = Int(assignment[slot + i])
                destinations[i] = next[list]
                next[list] += 1
                rowPositions[destinations[i]] = Int64(positions[i])
            }
            chunk.withUnsafeBufferPointer { chunkRows in
            quantizer.centroids.withUnsafeBufferPointer { centroids in
            destinations.withUnsafeBufferPointer { destinations in
            assignment.withUnsafeBufferPointer { lists in
            codes.withUnsafeMutableBufferPointer { codes in
            lows.withUnsafeMutableBufferPointer { lows in
            steps.withUnsafeMutableBufferPointer { steps in
                codeResiduals(chunkRows.baseAddress!, count: n, lists: lists.baseAddress! + slot, destinations: destinations.baseAddress!,
                              centroids: centroids.baseAddress!, coder: coder, codes: codes.baseAddress!, lows: lows.baseAddress!,
                              steps: steps.baseAddress!, threads: threads)
            }}}}}}}
            slot += n
        }
        assignment = []
        let segments = set.segments[run].map(\.entry.file)
        let part = try store.writeIndexPart(for: set, segments: segments, lists: lists,
                                            arrays: IndexPartArrays(listOffsets: offsets, codes: codes, lows: lows, steps: steps, positions: rowPositions))
        return (part, misassigned)
    }

    /// Codes `count` rows (`[count, width]`, float32) as 4-bit residuals from their lists'
    /// centroids into part slots `destinations[i]` (distinct), split among `threads` threads.
    static func codeResiduals(_ rows: UnsafePointer<Float>, count: Int, lists: UnsafePointer<Int32>, destinations: UnsafePointer<Int>,
                              centroids: UnsafePointer<Float>, coder: FourBitCoder, codes: UnsafeMutablePointer<UInt8>,
                              lows: UnsafeMutablePointer<Float>, steps: UnsafeMutablePointer<Float>, threads: Int) {
        let width = coder.width, bytesPerRow = coder.bytesPerRow
        let workers = max(1, min(threads, count / 256))
        // Every pointer stays valid for this call; the workers write disjoint slots.
        let addresses = (rows: UInt(bitPattern: rows), lists: UInt(bitPattern: lists), destinations: UInt(bitPattern: destinations),
                         centroids: UInt(bitPattern: centroids), codes: UInt(bitPattern: codes), lows: UInt(bitPattern: lows),
                         steps: UInt(bitPattern: steps))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let rows = UnsafePointer<Float>(bitPattern: addresses.rows)!
            let lists = UnsafePointer<Int32>(bitPattern: addresses.lists)!
            let destinations = UnsafePointer<Int>(bitPattern: addresses.destinations)!
            let centroids = UnsafePointer<Float>(bitPattern: addresses.centroids)!
            let codes = UnsafeMutablePointer<UInt8>(bitPattern: addresses.codes)!
            let lows = UnsafeMutablePointer<Float>(bitPattern: addresses.lows)!
            let steps = UnsafeMutablePointer<Float>(bitPattern: addresses.steps)!
            withUnsafeTemporaryAllocation(of: Float.self, capacity: width) { residual in
                for i in (count * worker / workers)..<(count * (worker + 1) / workers) {
                    let list = Int(lists[i]), to = destinations[i]
                    for j in 0..<width { residual[j] = rows[i * width + j] - centroids[list * width + j] }
                    let (low, step) = coder.encode(residual.baseAddress!, into: codes + to * bytesPerRow)
                    lows[to] = low
                    steps[to] = step
                }
            }
        }
    }

    // MARK: - Helpers

    static func quantizerFile(of entry: Manifest.IndexEntry) throws -> PublishedIndexFile {
        guard let size = entry.size, let checksum = entry.fileChecksum else {
            throw StoreError(.corrupt, "index quantizer \(entry.file) has no size and checksum in the manifest")
        }
        return PublishedIndexFile(file: entry.file, size: size, fileChecksum: checksum, checksums: entry.checksums)
    }

    static func report(_ operation: String, entry: Manifest.IndexEntry, version: Int, name: String, parts: [Manifest.IndexPartEntry],
                       written: [Manifest.IndexPartEntry], rowsCoded: Int, clock: PhaseClock, width: Int, boundRows: Int,
                       assignment: String, misassignedShare: Double) -> PartIndexReport {
        let stored = QueryParametersText.stored(entry)
        let groups = entry.parameters["groups"]?.intValue ?? 1
        return PartIndexReport(operation: operation, version: version, name: name, kind: PartIndexKind.name, metric: entry.metric,
                               lists: entry.lists, groups: groups, rows: parts.reduce(0) { $0 + $1.rows }, rowsCoded: rowsCoded,
                               parts: parts.count, partsWritten: written.count, defaultNprobe: stored.nprobe,
                               groupProbe: entry.parameters["group_probe"]?.intValue ?? groups, rerank: stored.rerank,
                               recallTarget: entry.parameters["recall_target"]?.doubleValue ?? 0, tuning: stored.tuning,
                               seconds: clock.seconds, peakRSSBytes: peakRSSBytes(),
                               memoryBoundBytes: memoryBound(rows: boundRows, width: width, lists: entry.lists, groups: groups, trainingRows: 0),
                               memoryFormula: memoryFormula,
                               indexBytes: (entry.size ?? 0) + parts.reduce(0) { $0 + ($1.size ?? 0) },
                               assignment: assignment, misassignedShare: misassignedShare)
    }

    static func assignmentText(_ groupProbe: Int, groups: Int) -> String {
        groupProbe >= groups ? "exact" : "\(groupProbe) of \(groups) groups"
    }

    /// Rows whose list through groups was checked against the nearest of all lists.
    struct MisassignmentCount {
        var checked = 0, differing = 0
        mutating func add(_ other: MisassignmentCount) { checked += other.checked; differing += other.differing }
        var share: Double { checked == 0 ? 0 : Double(differing) / Double(checked) }
    }

    /// `count` distinct positions of `0..<total` in random order.
    static func distinctSample(count: Int, from total: Int, random: inout SeededRandom) -> [Int] {
        precondition(count <= total)
        if count * 4 >= total {
            var all = Array(0..<total)
            random.shuffle(&all)
            return Array(all.prefix(count))
        }
        var seen = Set<Int>(minimumCapacity: count)
        var order: [Int] = []
        order.reserveCapacity(count)
        while order.count < count {
            let value = Int(random.next() % UInt64(total))
            if seen.insert(value).inserted { order.append(value) }
        }
        return order
    }

    /// The process's peak resident set (getrusage ru_maxrss, KiB on Linux) in bytes.
    public static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
    }

    struct PhaseClock {
        var seconds: [String: Double] = [:]
        var last = Date()
        mutating func lap(_ phase: String) {
            seconds[phase, default: 0] += Date().timeIntervalSince(last)
            last = Date()
        }
    }
}

/// The tuned parameters an index stores (Spec §10), read the same way everywhere.
enum QueryParametersText {
    static func stored(_ index: Manifest.IndexEntry) -> (nprobe: Int, rerank: Int, tuning: [IVFBuildReport.TuningPoint]) {
        let parameters = index.parameters
        var tuning: [IVFBuildReport.TuningPoint] = []
        if case .array(let rows)? = parameters["tuning"] {
            for row in rows {
                if case .object(let fields) = row, let probe = fields["nprobe"]?.intValue, let recall = fields["recall"]?.doubleValue {
                    tuning.append(.init(nprobe: probe, recall: recall))
                }
            }
        }
        return (parameters["default_nprobe"]?.intValue ?? min(index.lists, 16), parameters["rerank"]?.intValue ?? 64, tuning)
    }
}

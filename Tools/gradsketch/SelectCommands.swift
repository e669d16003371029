import ArgumentParser
import Foundation
import GradSketch
import GradSketchInterchange
import GradSketchProjection
import GradSketchSelect
import GradSketchStore

/// What `select`, `value` and `results show` print with --json.
///
/// Rows are ranked in the order a reader expects: a selection in the order it picked its rows
/// (greedy pick order, sample order), a valuation (In-Run, GradEx) by score, lowest first
/// (In-Run: the likeliest harmful example first; GradEx: the best source first), ties by id —
/// whatever order the result was stored in. `limit` keeps the first rows of that ranking.
struct ResultOutput: Encodable {
    struct Row: Encodable { let rank: Int, id: String, position: Int, score: Double }
    let name: String?, method: String, set: String, setVersion: Int, version: Int?
    let parameters: [String: JSONValue]
    /// Rows in the result; `rows` may hold fewer when a limit was asked for.
    let count: Int
    let rows: [Row]

    init(name: String?, version: Int?, method: String, set: String, setVersion: Int, parameters: [String: JSONValue],
         positions: [Int], ids: [String], scores: [Double], limit: Int? = nil) {
        self.name = name
        self.version = version
        self.method = method
        self.set = set
        self.setVersion = setVersion
        self.parameters = parameters
        count = ids.count
        let order = Self.isValuation(method)
            ? ids.indices.sorted { scores[$0] != scores[$1] ? scores[$0] < scores[$1] : ids[$0] < ids[$1] }
            : Array(ids.indices)
        rows = order.prefix(limit ?? order.count).enumerated().map { rank, index in
            Row(rank: rank + 1, id: ids[index], position: positions[index], score: scores[index])
        }
    }

    /// Valuation methods score every row; selection methods pick rows in an order of their own.
    static func isValuation(_ method: String) -> Bool {
        method.hasPrefix("in-run-shapley") || method.hasPrefix("gradex")
    }

    func printText() {
        print("\(method) on \(set) (version \(setVersion))\(name.map { ": saved as \($0) in version \(version!)" } ?? "")")
        for row in rows { print(String(format: "%5d  %-40@ %.6g", row.rank, row.id as NSString, row.score)) }
    }
}

/// Saves a result when --save is given; returns the version committed.
func saveIfAsked(_ name: String?, _ store: GradSketchStore.Store, _ result: GradSketchSelect.SelectionResult) throws -> Int? {
    guard let name else { return nil }
    return try store.saveResult(name, method: result.method, set: result.set, setVersion: result.setVersion, parameters: result.parameters,
                                positions: result.positions, ids: result.ids, scores: result.scores)
}

struct SelectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "select",
        abstract: "Select rows of a sketch set: SELECT strategies, density sampling, or top-k by a stored score column.",
        discussion: """
        SELECT (Morris et al. 2025) recovers training data from weights: the query is a stored weight delta projected with \
        the set's projection (--delta; give --negate when the delta is finetuned − base, so the query is base − finetuned), \
        or a .npy vector; the rows are per-example gradient sketches at the finetuned checkpoint. Strategies: greedy \
        (running sum maximising cos(Σ selected, q), updated incrementally: one pass over the rows per pick), \
        greedy-batched (--batch-size), topk, topk-balanced (per-label quota), random, loss-low, loss-high. \
        --method density samples with probability ∝ 1/(LSH kernel-sum score) (Sachdeva et al. 2024); --method column takes \
        the top rows of a stored score column (e.g. Ask-LLM scores). --method paser (He et al. 2025) clusters the rows \
        spectrally, gives each cluster a budget ∝ its mean --degradation-column (capped at its size, exactly -k rows in all; \
        --allocation released-code floors the shares as the released code does, uniform gives equal shares), takes rows by degradation per log cost (--index: kNN graph through a cosine index), and with \
        --concepts keeps only rows whose concepts (JSON-array metadata) agree with the concept graph so far; \
        --concepts-from-text takes the concepts as RAKE key phrases of the metadata text (--stopwords FILE to replace the built-in English list). --save NAME writes the result into the store as a new version.
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "Sketch set to select from.") var set: String
    @Option(help: "select, density, column or paser.") var method: String = "select"
    @Option(help: "SELECT strategy: greedy, greedy-batched, topk, topk-balanced, random, loss-low, loss-high.") var strategy: String = "greedy"
    @Option(name: .customShort("k"), help: "How many rows to select.") var count: Int
    @Option(help: "Query .npy vector [k] (SELECT).") var vector: String?
    @Option(help: "Stored weight delta, projected with the set's projection (SELECT).") var delta: String?
    @Flag(help: "Negate the projected delta.") var negate = false
    @Flag(help: "Greedy strategies sum unit-normalised rows (the paper's full-model variant normalises each gradient).") var unitRows = false
    @Option(help: "Reset the running sum every N picks (greedy-batched).") var batchSize: Int = 0
    @Option(help: "Loss column for loss-low / loss-high.") var lossColumn: String = "loss"
    @Option(help: "Score column for --method column.") var column: String?
    @Flag(help: "With --method column, take the smallest values.") var smallest = false
    @Option(help: "Density: hash functions.") var hashes: Int = 200
    @Option(help: "Density: buckets per hash.") var buckets: Int = 20_000
    @Option(help: "Density: bucket width (default: median nearest-neighbour distance of a sample).") var width: Double?
    @Option(help: "Density: p-stable projections per hash (kernel p(c)^power; 1 is the paper's plain hash).") var power: Int = 1
    @Option(help: "PASER: per-row degradation column.") var degradationColumn: String = "degradation"
    @Option(help: "PASER: per-row cost column (default: equal costs).") var costColumn: String?
    @Flag(help: "PASER: apply the concept-consistency filter to JSON-array metadata.") var concepts = false
    @Flag(help: "PASER: apply the concept-consistency filter to RAKE key phrases of the metadata text (an Alpaca JSON record: instruction, input, output).")
    var conceptsFromText = false
    @Option(help: "PASER: stopword file for --concepts-from-text (words separated by white space).") var stopwords: String?
    @Option(help: "PASER: spectral clusters.") var clusters: Int = 10
    @Option(help: "PASER: cluster budgets, proportional, released-code or uniform.") var allocation: String = "proportional"
    @Option(help: "PASER: a cosine IVF index of the set for the kNN graph (default: exact, O(N²), for up to about 10⁵ rows).") var index: String?
    @Option(help: "Seed (random strategy, density hashes and sampling, PASER clustering).") var seed: UInt64 = 0
    @Option(help: "Save the result under this name (a new version).") var save: String?
    @Option(help: "Read the set as of this version.") var at: Int?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        try requireOption(count, "-k", in: 1...OptionLimit.count)
        try requireOption(batchSize, "--batch-size", in: 0...OptionLimit.count)
        try requireOption(hashes, "--hashes", in: 1...OptionLimit.perQuery)
        try requireOption(buckets, "--buckets", in: 1...OptionLimit.count)
        try requireOption(power, "--power", in: 1...64)
        // The density counters are one Int32 per (hash, bucket).
        guard hashes * buckets <= 1 << 31 else {
            throw ValidationError("--hashes × --buckets must be at most 2^31 counters, found \(hashes) × \(buckets)")
        }
        guard hashes * power <= OptionLimit.perQuery else {
            throw ValidationError("--hashes × --power must be at most \(OptionLimit.perQuery) projections, found \(hashes) × \(power)")
        }
        if let width, !(width.isFinite && width > 0) { throw ValidationError("--width must be a finite number > 0, found \(width)") }
        try requireOption(clusters, "--clusters", in: 1...OptionLimit.perQuery)
        try requireVersion(at)
    }

    func run() throws {
        try reportingErrors {
            let store = try GradSketchStore.Store(opening: location.store)
            let target = try store.sketchSet(set, at: at)
            let result: GradSketchSelect.SelectionResult
            let progress = ProgressLine(label: "select", unit: "", bytesPerUnit: nil)
            defer { progress.finish() }
            switch method {
            case "select":
                guard let strategyValue = SelectStrategy(rawValue: strategy) else {
                    throw ValidationError("--strategy must be one of \(SelectStrategy.allCases.map(\.rawValue).joined(separator: ", ")), found \(strategy)")
                }
                let snapshot = try Snapshot(store: try GradSketch.Store(opening: location.store), version: at)
                let method: SelectionRequest.Method
                switch strategyValue {
                case .random: method = .random(seed: seed)
                case .topK: method = .topK
                case .balancedTopK: method = .balancedTopK
                case .greedy: method = .greedy
                case .greedyBatched: method = .greedyBatched(batch: batchSize)
                case .lowestLoss: method = .lowestLoss(column: lossColumn)
                case .highestLoss: method = .highestLoss(column: lossColumn)
                }
                let needsQuery = ![.random, .lowestLoss, .highestLoss].contains(strategyValue)
                let selectionTarget: SelectionRequest.Target = needsQuery ? try selectionTarget(width: target.k) : .vector([])
                var request = SelectionRequest(set: set, target: selectionTarget, method: method, count: count)
                request.unitRows = unitRows
                let selection = try snapshot.select(request, progress: progress.update(phase:_:_:))
                result = GradSketchSelect.SelectionResult(method: selection.method, parameters: selection.parameters, set: set,
                                                          setVersion: selection.version, positions: selection.positions,
                                                          ids: selection.ids, scores: selection.scores)
            case "density":
                var options = DensitySampling.Options()
                options.hashes = hashes
                options.buckets = buckets
                options.width = width
                options.power = power
                options.seed = seed
                result = try DensitySampling.sample(target, count: count, options: options, progress: progress.update(phase:_:_:))
            case "paser":
                var options = PASER.Options()
                options.clusters = clusters
                options.index = index
                guard let allocationValue = PASER.Allocation(rawValue: allocation) else {
                    throw ValidationError("--allocation must be one of \(PASER.Allocation.allCases.map(\.rawValue).joined(separator: ", ")), found \(allocation)")
                }
                options.allocation = allocationValue
                options.seed = seed
                result = try PASER.select(target, budget: count, degradationColumn: degradationColumn, costColumn: costColumn,
                                          concepts: try conceptSource(), options: options, progress: progress.update(phase:_:_:))
            case "column":
                guard let column else { throw ValidationError("--method column needs --column NAME") }
                result = try DensitySampling.topByColumn(target, column: column, count: count, smallest: smallest)
            default:
                throw ValidationError("--method must be select, density, column or paser, found \(method)")
            }
            progress.finish()
            let version = try saveIfAsked(save, store, result)
            let output = ResultOutput(name: save, version: version, method: result.method, set: result.set, setVersion: result.setVersion,
                                      parameters: result.parameters, positions: result.positions, ids: result.ids, scores: result.scores)
            if json { printJSON(output) } else { output.printText() }
        }
    }

    private func conceptSource() throws -> PASER.ConceptSource {
        if concepts && conceptsFromText { throw ValidationError("give at most one of --concepts and --concepts-from-text") }
        if stopwords != nil && !conceptsFromText { throw ValidationError("--stopwords needs --concepts-from-text") }
        if concepts { return .metadataArrays }
        guard conceptsFromText else { return .none }
        guard let stopwords else { return .rakePhrases() }
        // The one text reader, so a CRLF stopword file reads like any other text input.
        let lines: [String]
        do { lines = try TextLines.read(stopwords) } catch let error as InterchangeError {
            throw ValidationError("cannot read the stopword file \(stopwords): \(error.message)")
        }
        let words = lines.flatMap { $0.lowercased().split(whereSeparator: \.isWhitespace).map(String.init) }
        return .rakePhrases(stopwords: Set(words))
    }

    private func selectionTarget(width: Int) throws -> SelectionRequest.Target {
        guard (vector != nil) != (delta != nil) else { throw ValidationError("give exactly one of --vector and --delta") }
        if let vector { return .vector(try QueryInputs.readVectors(vector, width: width, what: "query").values) }
        return .delta(tensorSet: delta!, negate: negate)
    }

}

struct ValueCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "value",
        abstract: "Value training data: In-Run Data Shapley / TracIn from per-step sketches, or data sources with GradEx.",
        discussion: """
        --method inrun (default): --log is a set with one row per (step t, example z in the batch): the sketch of z's loss gradient at w_t, id \
        <example>@<t>, columns step and learning_rate (η_t per example). --validation holds one row per step, id <t>: the \
        validation-loss gradient sketch at w_t. --hessian (optional) holds u_t = P H_t G_t per step for the second-order term. \
        value(z) = Σ_t η_t ⟨v_t, s_{t,z}⟩ − (η_t²/2) ⟨u_t, s_{t,z}⟩ (positive = helpful), printed lowest first (the likeliest harmful data). \
        --method gradex: --set holds per-example gradient sketches at a meta-initialisation, one label per data source; \
        --vector is the sketch of the target (validation) loss gradient there, --base-loss the target loss. Each of --subsets \
        random subsets (--fraction of the sources) gets the first-order estimate L − step·⟨v, mean s⟩ (or the logistic-regression \
        one); a source scores the mean estimate over the subsets holding it (lower = better); forward selection on the estimates \
        is reported in the parameters.
        """)

    @OptionGroup var location: StoreArgument
    @Option(help: "inrun or gradex.") var method: String = "inrun"
    @Option(help: "Training-log set of per-step example sketches (inrun).") var log: String?
    @Option(help: "Per-step validation gradient sketches (inrun).") var validation: String?
    @Option(help: "Sketches at the meta-initialisation, labelled by source (gradex).") var set: String?
    @Option(help: "Target-loss gradient sketch, .npy [k] (gradex).") var vector: String?
    @Option(help: "Target loss at the meta-initialisation (gradex).") var baseLoss: Double = 0
    @Option(help: "Step length of the first-order estimate (gradex).") var step: Double = 1
    @Option(help: "Random subsets (gradex).") var subsets: Int = 200
    @Option(help: "Share of the sources in each subset (gradex).") var fraction: Double = 0.5
    @Option(help: "linear or logistic (gradex).") var estimator: String = "linear"
    @Option(help: "Per-row factor for the logistic features, e.g. 1/(1 − p_y) to turn loss gradients into the paper's margin gradients (gradex).") var featureScaleColumn: String?
    @Option(help: "Seed for the subsets (gradex).") var seed: UInt64 = 0
    @Option(help: "Per-step Hessian-vector-product sketches (second order).") var hessian: String?
    @Option(name: .customShort("k"), help: "How many rows to print (all are saved).") var count: Int = 20
    @Option(help: "Save the values under this name (a new version).") var save: String?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }

    func validate() throws {
        try requireOption(subsets, "--subsets", in: 1...OptionLimit.perQuery)
        try requireOption(count, "-k", in: 1...OptionLimit.count)
        guard fraction > 0, fraction <= 1 else { throw ValidationError("--fraction must be in (0, 1], found \(fraction)") }
        guard step.isFinite, baseLoss.isFinite else { throw ValidationError("--step and --base-loss must be finite numbers, found \(step) and \(baseLoss)") }
    }

    func run() throws {
        try reportingErrors {
            let store = try GradSketchStore.Store(opening: location.store)
            if method == "gradex" { try runGradEx(store); return }
            guard method == "inrun" else { throw ValidationError("--method must be inrun or gradex, found \(method)") }
            guard let log, let validation else { throw ValidationError("--method inrun needs --log and --validation") }
            let logSet = try store.sketchSet(log)
            let values = try InRunValuation.values(log: logSet, validation: try store.sketchSet(validation),
                                                   hessian: try hessian.map { try store.sketchSet($0) })
            let ordered = values.sorted { $0.total != $1.total ? $0.total < $1.total : $0.example < $1.example }
            let result = GradSketchSelect.SelectionResult(method: hessian == nil ? "in-run-shapley/first-order" : "in-run-shapley/second-order",
                                         parameters: ["log": .string(log), "validation": .string(validation), "hessian": hessian.map(JSONValue.string) ?? .null],
                                         set: log, setVersion: logSet.version, positions: ordered.indices.map { $0 },
                                         ids: ordered.map(\.example), scores: ordered.map(\.total))
            let version = try saveIfAsked(save, store, result)
            let output = ResultOutput(name: save, version: version, method: result.method, set: log, setVersion: logSet.version,
                                      parameters: result.parameters, positions: result.positions, ids: result.ids, scores: result.scores,
                                      limit: count)
            if json { printJSON(output) } else { output.printText() }
        }
    }

    private func runGradEx(_ store: GradSketchStore.Store) throws {
        guard let set, let vector else { throw ValidationError("--method gradex needs --set and --vector") }
        guard let estimatorValue = GradEx.Estimator(rawValue: estimator) else { throw ValidationError("--estimator must be linear or logistic, found \(estimator)") }
        guard subsets >= 1, fraction > 0, fraction <= 1 else { throw ValidationError("--subsets must be ≥ 1 and --fraction in (0, 1]") }
        let target = try store.sketchSet(set)
        let v = try QueryInputs.readVectors(vector, width: target.k, what: "the target-gradient sketch").values
        let gradex = try GradEx(target, keepingRows: estimatorValue == .logistic, featureScaleColumn: featureScaleColumn)
        // Progress counts estimates: one per subset, then at most S(S+1)/2 for forward selection.
        let progress = ProgressLine(label: "gradex", unit: "estimates", bytesPerUnit: nil)
        var phase = "ensemble", done = 0, total = subsets
        let estimate = { (subset: [Int]) throws -> Double in
            defer { done += 1; progress.update(phase: phase, done, total) }
            return try gradex.estimate(subset, validation: v, baseLoss: baseLoss, step: step, estimator: estimatorValue)
        }
        let ensemble = try gradex.randomEnsemble(subsets: subsets, fraction: fraction, seed: seed, estimate: estimate)
        (phase, done, total) = ("forward selection (at most)", 0, gradex.sources.count * (gradex.sources.count + 1) / 2)
        let forward = try gradex.forwardSelection(estimate: estimate)
        progress.finish()
        let order = gradex.sources.indices.sorted { ensemble.scores[$0] < ensemble.scores[$1] }
        let result = GradSketchSelect.SelectionResult(method: "gradex/random-ensemble", parameters: [
            "estimator": .string(estimator), "step": .number(step), "base_loss": .number(baseLoss), "subsets": .number(Double(subsets)),
            "fraction": .number(fraction), "seed": JSONValue(seed), "forward_selection": .array(forward.map { .string(gradex.sources[$0]) }),
        ], set: set, setVersion: target.version, positions: order, ids: order.map { gradex.sources[$0] }, scores: order.map { ensemble.scores[$0] })
        let version = try saveIfAsked(save, store, result)
        let output = ResultOutput(name: save, version: version, method: result.method, set: set, setVersion: target.version,
                                  parameters: result.parameters, positions: result.positions, ids: result.ids, scores: result.scores,
                                  limit: count)
        if json { printJSON(output) } else {
            output.printText()
            print("forward selection: " + forward.map { gradex.sources[$0] }.joined(separator: ", "))
        }
    }
}

struct Results: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List, show and export saved selections and valuations.",
                                                     subcommands: [ListResults.self, ShowResult.self, ExportResult.self])
}

struct ListResults: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List saved results.")
    @OptionGroup var location: StoreArgument
    @Option(help: "As of this version.") var at: Int?
    @OptionGroup var output: OutputOptions

    struct Listed: Encodable { let name: String, method: String, set: String, setVersion: Int, count: Int }
    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let manifest = try GradSketchStore.Store(opening: location.store).manifest(at: at)
            let results = (manifest.results ?? [:]).sorted(by: { $0.key < $1.key })
            if output.json {
                printJSON(results.map { Listed(name: $0.key, method: $0.value.method, set: $0.value.set, setVersion: $0.value.setVersion, count: $0.value.count) })
                return
            }
            for (name, entry) in results {
                print("\(name): \(entry.method) on \(entry.set)@\(entry.setVersion), \(entry.count) rows")
            }
        }
    }
}

struct ShowResult: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Print a saved result (ids, positions, scores, method, parameters).",
        discussion: "A selection is listed in the order it picked its rows; a valuation (In-Run, GradEx) by score, lowest first, ties by id.")
    @OptionGroup var location: StoreArgument
    @Option(help: "Result name.") var name: String
    @Option(help: "As of this version.") var at: Int?
    @Option(help: "Also write the ids, one per line and in the order shown, to this file.") var idsOut: String?
    @OptionGroup var output: OutputOptions
    var json: Bool { output.json }
    func validate() throws { try requireVersion(at) }
    func run() throws {
        try reportingErrors {
            let store = try GradSketchStore.Store(opening: location.store)
            let stored = try store.result(name, at: at)
            if let idsOut { try store.refuseOutputInsideStore(idsOut) }
            let output = ResultOutput(name: name, version: at, method: stored.entry.method, set: stored.entry.set, setVersion: stored.entry.setVersion,
                                      parameters: stored.entry.parameters, positions: stored.positions, ids: stored.ids, scores: stored.scores)
            if let idsOut { try TextLines.write(output.rows.map(\.id), to: idsOut) }
            if json { printJSON(output) } else {
                print("\(name): \(stored.entry.method) on \(stored.entry.set) (version \(stored.entry.setVersion))")
                for row in output.rows { print(String(format: "%5d  %-40@ %.6g", row.rank, row.id as NSString, row.score)) }
            }
        }
    }
}

struct ExportResult: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a saved result to a .csv or .jsonl file: rank, id, position, score per row.",
        discussion: """
        Rows are ranked as `results show` lists them. A .csv file has the header rank,id,position,score (ids quoted when they \
        hold a comma, quote or line break); a .jsonl file has one {"rank", "id", "position", "score"} object per line. \
        The file is written beside its final name and renamed into place; outputs inside the store are refused.
        """)
    @OptionGroup var location: StoreArgument
    @Option(help: "Result name.") var name: String
    @Option(help: "Output file, .csv or .jsonl.") var out: String
    @Option(help: "As of this version.") var at: Int?
    @OptionGroup var output: OutputOptions

    struct Output: Encodable { let name: String, rows: Int, out: String }

    func validate() throws { try requireVersion(at) }

    func run() throws {
        try reportingErrors {
            let store = try GradSketchStore.Store(opening: location.store)
            guard out.hasSuffix(".csv") || out.hasSuffix(".jsonl") else {
                throw StoreError(.invalidInput, "expected an output file ending in .csv or .jsonl, found \((out as NSString).lastPathComponent)", path: out)
            }
            try store.refuseOutputInsideStore(out)
            let stored = try store.result(name, at: at)
            let ranked = ResultOutput(name: name, version: at, method: stored.entry.method, set: stored.entry.set, setVersion: stored.entry.setVersion,
                                      parameters: stored.entry.parameters, positions: stored.positions, ids: stored.ids, scores: stored.scores)
            let lines: [String]
            if out.hasSuffix(".csv") {
                lines = ["rank,id,position,score"] + ranked.rows.map { "\($0.rank),\(csvField($0.id)),\($0.position),\($0.score)" }
            } else {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
                lines = try ranked.rows.map { String(decoding: try encoder.encode($0), as: UTF8.self) }
            }
            try TextLines.write(lines, to: out)
            if output.json { printJSON(Output(name: name, rows: ranked.rows.count, out: out)); return }
            print("exported \(ranked.rows.count) rows of result \(name) to \(out)")
        }
    }

    private func csvField(_ text: String) -> String {
        guard text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

// Predicts expression for a region of a slide with libspahgc and prints, for each spot, its
// id, centre and most expressed gene.
//   predict_region BUNDLE [SLIDE] (default: ../shared/data/wsi/cmu_small_region.svs)
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spahgc.h"

namespace {

// Throws the library's message when a call fails.
void check(spahgc_status status) {
    if (status != SPAHGC_STATUS_OK) {
        throw std::runtime_error("spahgc error " + std::to_string(status) + ": " + spahgc_last_error());
    }
}

using Engine = std::unique_ptr<spahgc_engine, decltype(&spahgc_engine_close)>;
using Result = std::unique_ptr<spahgc_result, decltype(&spahgc_result_free)>;

}  // namespace

int main(int argc, char **argv) try {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s BUNDLE [SLIDE]\n", argv[0]);
        return 2;
    }
    const char *slide = argc > 2 ? argv[2] : "../shared/data/wsi/cmu_small_region.svs";
    if (spahgc_abi_version() != SPAHGC_ABI_VERSION) throw std::runtime_error("libspahgc ABI mismatch");

    spahgc_engine_options options = spahgc_engine_options_default();
    options.device = SPAHGC_DEVICE_CPU;
    spahgc_engine *raw_engine = nullptr;
    check(spahgc_engine_open(argv[1], &options, &raw_engine));
    Engine engine(raw_engine, spahgc_engine_close);

    spahgc_region region{0, 0, 2000, 2000};  // level-0 pixels
    spahgc_result *raw_result = nullptr;
    check(spahgc_predict_region(engine.get(), slide, &region, 0, true, nullptr, &raw_result));
    Result result(raw_result, spahgc_result_free);

    size_t spots = 0, genes = 0;
    check(spahgc_result_spot_count(result.get(), &spots));
    check(spahgc_result_gene_count(result.get(), &genes));
    std::vector<float> values(spots * genes);
    std::vector<double> centres(2 * spots);
    check(spahgc_result_values(result.get(), values.data(), values.size()));
    check(spahgc_result_centres(result.get(), centres.data(), centres.size()));
    std::printf("spahgc %s: %zu spots x %zu genes in %s\n", spahgc_version(), spots, genes, slide);
    for (size_t s = 0; s < spots; s++) {
        size_t top = 0;
        for (size_t g = 1; g < genes; g++) {
            if (values[s * genes + g] > values[s * genes + top]) top = g;
        }
        const char *id = nullptr, *gene = nullptr;
        check(spahgc_result_spot_id(result.get(), s, &id));
        check(spahgc_engine_gene_name(engine.get(), top, &gene));
        std::printf("%s (%.0f, %.0f): %s %.3f\n", id, centres[2 * s], centres[2 * s + 1], gene, values[s * genes + top]);
    }
    return 0;
} catch (const std::exception &e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
}

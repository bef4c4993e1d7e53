package qupath.ext.spahgc;

import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;
import org.spahgc.Detection;
import org.spahgc.Detections;
import org.spahgc.EngineOptions;
import org.spahgc.Prediction;
import org.spahgc.ProgressListener;
import org.spahgc.Region;
import org.spahgc.Spahgc;
import org.spahgc.SpahgcEngine;
import qupath.lib.images.ImageData;
import qupath.lib.images.servers.PixelCalibration;
import qupath.lib.objects.PathObject;
import qupath.lib.objects.PathObjects;
import qupath.lib.objects.classes.PathClass;
import qupath.lib.regions.ImagePlane;
import qupath.lib.roi.ROIs;

/**
 * Predicts the spahgc spots of a region of an image and adds them to its hierarchy as
 * detections (class {@code spahgc}, named by spot id, one measurement per gene). No JavaFX:
 * the menu command and scripts share it.
 */
public final class SpahgcPredictor {
    /** The class of the detections spahgc adds. */
    public static final PathClass SPOTS = PathClass.fromString("spahgc");

    private final Path bundle;
    private final EngineOptions options;

    /**
     * The install the environment names: {@code SPAHGC_PREFIX} (default {@code ~/spahgc}),
     * {@code SPAHGC_BUNDLE} (default {@code PREFIX/bundle}), {@code SPAHGC_CACHE_DIR} (default
     * {@code ~/.cache/spahgc}, as for the CLI).
     */
    public static SpahgcPredictor fromEnvironment() {
        Path home = Path.of(System.getProperty("user.home"));
        Path prefix = environment("SPAHGC_PREFIX", home.resolve("spahgc"));
        return new SpahgcPredictor(prefix, environment("SPAHGC_BUNDLE", prefix.resolve("bundle")),
                environment("SPAHGC_CACHE_DIR", home.resolve(".cache").resolve("spahgc")));
    }

    /**
     * @param prefix the PREFIX of {@code scripts/install-capi.sh} (holds lib/libspahgc.so)
     * @param bundle the model bundle directory
     * @param cacheDir the embedding cache directory
     */
    public SpahgcPredictor(Path prefix, Path bundle, Path cacheDir) {
        Spahgc.useLibrary(prefix.resolve("lib").resolve("libspahgc.so"));
        this.bundle = bundle;
        this.options = EngineOptions.DEFAULTS.withCache(cacheDir, 0);
    }

    /**
     * Predicts the spots on tissue of {@code region} (level-0 pixels) and adds them on
     * {@code plane}, replacing those with the same ids a previous run added.
     *
     * @return the number of spots added
     */
    public int predictInto(ImageData<?> imageData, Region region, ImagePlane plane, ProgressListener progress) {
        var server = imageData.getServer();
        URI uri = server.getURIs().iterator().next();
        PixelCalibration calibration = server.getPixelCalibration();
        double micronsPerPixel = calibration.hasPixelSizeMicrons() ? calibration.getAveragedPixelSizeMicrons() : 0;
        Prediction prediction;
        try (SpahgcEngine engine = SpahgcEngine.open(bundle, options)) {
            prediction = engine.predictRegion(Path.of(uri), region, micronsPerPixel, true, null, progress);
        }
        List<PathObject> spots = Detections.fromPrediction(prediction).stream()
                .map(spot -> toDetection(spot, plane))
                .collect(Collectors.toList());
        Set<String> ids = Set.copyOf(prediction.spotIds());
        var hierarchy = imageData.getHierarchy();
        hierarchy.removeObjects(hierarchy.getDetectionObjects().stream()
                .filter(old -> old.getPathClass() == SPOTS && ids.contains(old.getName()))
                .collect(Collectors.toList()), true);
        hierarchy.addObjects(spots);
        return spots.size();
    }

    private static Path environment(String name, Path fallback) {
        String value = System.getenv(name);
        return value == null || value.isEmpty() ? fallback : Path.of(value);
    }

    private static PathObject toDetection(Detection spot, ImagePlane plane) {
        Region box = spot.bounds();
        PathObject detection = PathObjects.createDetectionObject(
                ROIs.createEllipseROI(box.x(), box.y(), box.width(), box.height(), plane), SPOTS);
        detection.setName(spot.id());
        try (var measurements = detection.getMeasurementList()) {
            spot.measurements().forEach(measurements::put);
        }
        return detection;
    }
}

/*
 * spahgc: predicted spatial gene expression as QuPath detections.
 *
 * Predicts expression for the spahgc grid spots on tissue in the selected annotation's bounds
 * (with none selected, in the viewer's visible region) and adds one circular detection per
 * spot, named by spot id, with one measurement per gene: Measure > Show measurement maps then
 * draws a gene's heatmap. Running it again replaces the spots it made before in that region.
 * Install and use: plugins/qupath/README.md.
 */
import java.nio.file.Path
import java.nio.file.Paths
import org.spahgc.Detections
import org.spahgc.EngineOptions
import org.spahgc.ProgressListener
import org.spahgc.Region
import org.spahgc.Spahgc
import org.spahgc.SpahgcEngine
import qupath.lib.objects.PathObjects
import qupath.lib.roi.ROIs

// Where spahgc is: PREFIX of scripts/install-capi.sh, the model bundle, the embedding cache.
String home = System.getProperty('user.home')
Path prefix = Paths.get(System.getenv('SPAHGC_PREFIX') ?: "${home}/spahgc")
Path bundle = System.getenv('SPAHGC_BUNDLE') ? Paths.get(System.getenv('SPAHGC_BUNDLE')) : prefix.resolve('bundle')
Path cacheDir = Paths.get(System.getenv('SPAHGC_CACHE_DIR') ?: "${home}/.cache/spahgc")

def imageData = getCurrentImageData()
if (imageData == null) {
    throw new IllegalStateException('spahgc: open an image first')
}
def server = imageData.getServer()
def slide = Paths.get(server.getURIs().iterator().next())
def calibration = server.getPixelCalibration()
// 0: spahgc reads the resolution from the slide's metadata.
double micronsPerPixel = calibration.hasPixelSizeMicrons() ? calibration.getAveragedPixelSizeMicrons() : 0

// The selected annotation's bounds, else the visible part of the image.
def selected = getSelectedObject()
def plane
def bounds
if (selected != null && selected.isAnnotation() && selected.hasROI()) {
    def roi = selected.getROI()
    plane = roi.getImagePlane()
    bounds = new Region(roi.getBoundsX(), roi.getBoundsY(), roi.getBoundsWidth(), roi.getBoundsHeight())
} else {
    def viewer = getCurrentViewer()
    plane = viewer.getImagePlane()
    def visible = viewer.getDisplayedRegionShape().getBounds2D()
    double x = Math.max(0, visible.getMinX())
    double y = Math.max(0, visible.getMinY())
    bounds = new Region(x, y, Math.min(server.getWidth(), visible.getMaxX()) - x,
            Math.min(server.getHeight(), visible.getMaxY()) - y)
}

Spahgc.useLibrary(prefix.resolve('lib').resolve('libspahgc.so'))
def options = EngineOptions.DEFAULTS.withCache(cacheDir, 0)
int reported = -1
def progress = { long done, long total ->
    int tenth = (int) (10 * done / Math.max(1L, total))
    if (tenth != reported) {
        reported = tenth
        println "spahgc: embedded ${done} of ${total} spots"
    }
} as ProgressListener

def engine = SpahgcEngine.open(bundle, options)
def prediction
try {
    println "spahgc ${Spahgc.version()}: predicting ${bounds} of ${slide} at ${micronsPerPixel} µm/px"
    prediction = engine.predictRegion(slide, bounds, micronsPerPixel, true, null, progress)
} finally {
    engine.close()
}

def spahgcClass = getPathClass('spahgc')
def detections = Detections.fromPrediction(prediction).collect { spot ->
    def box = spot.bounds()
    def detection = PathObjects.createDetectionObject(
            ROIs.createEllipseROI(box.x(), box.y(), box.width(), box.height(), plane), spahgcClass)
    detection.setName(spot.id())
    def measurements = detection.getMeasurementList()
    spot.measurements().each { gene, value -> measurements.put(gene, value) }
    measurements.close()
    detection
}
def ids = detections.collect { it.getName() } as Set
removeObjects(getDetectionObjects().findAll { it.getPathClass() == spahgcClass && ids.contains(it.getName()) }, true)
addObjects(detections)
println "spahgc: added ${detections.size()} spots with ${prediction.genes().size()} genes each"

package qupath.ext.spahgc.ui;

import org.spahgc.Region;
import qupath.ext.spahgc.SpahgcPredictor;
import qupath.fx.dialogs.Dialogs;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.regions.ImagePlane;

/**
 * The menu command: predicts the selected annotation's bounds, or the visible region, on a
 * background thread, with the install {@link SpahgcPredictor#fromEnvironment()} finds.
 */
public final class PredictCommand implements Runnable {
    private final QuPathGUI qupath;

    /** The command for {@code qupath}'s current image. */
    public PredictCommand(QuPathGUI qupath) {
        this.qupath = qupath;
    }

    @Override
    public void run() {
        var imageData = qupath.getImageData();
        var viewer = qupath.getViewer();
        if (imageData == null || viewer == null) {
            Dialogs.showErrorMessage("spahgc", "Open an image first.");
            return;
        }
        var selected = imageData.getHierarchy().getSelectionModel().getSelectedObject();
        Region region;
        ImagePlane plane;
        if (selected != null && selected.isAnnotation() && selected.hasROI()) {
            var roi = selected.getROI();
            region = new Region(roi.getBoundsX(), roi.getBoundsY(), roi.getBoundsWidth(), roi.getBoundsHeight());
            plane = roi.getImagePlane();
        } else {
            var visible = viewer.getDisplayedRegionShape().getBounds2D();
            var server = imageData.getServer();
            double x = Math.max(0, visible.getMinX());
            double y = Math.max(0, visible.getMinY());
            region = new Region(x, y, Math.min(server.getWidth(), visible.getMaxX()) - x,
                    Math.min(server.getHeight(), visible.getMaxY()) - y);
            plane = viewer.getImagePlane();
        }
        Thread worker = new Thread(() -> {
            try {
                int spots = SpahgcPredictor.fromEnvironment().predictInto(imageData, region, plane, null);
                Dialogs.showInfoNotification("spahgc", "Added " + spots + " spots");
            } catch (RuntimeException e) {
                Dialogs.showErrorNotification("spahgc", e);
            }
        }, "spahgc-predict");
        worker.setDaemon(true);
        worker.start();
        Dialogs.showInfoNotification("spahgc", "Predicting expression in " + region);
    }
}

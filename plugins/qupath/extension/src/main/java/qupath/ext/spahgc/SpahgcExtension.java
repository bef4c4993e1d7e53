package qupath.ext.spahgc;

import javafx.scene.control.MenuItem;
import qupath.ext.spahgc.ui.PredictCommand;
import qupath.lib.gui.QuPathGUI;
import qupath.lib.gui.extensions.QuPathExtension;

/** Adds Extensions &gt; Predict expression (spahgc) to QuPath. */
public class SpahgcExtension implements QuPathExtension {
    private boolean installed;

    @Override
    public void installExtension(QuPathGUI qupath) {
        if (installed) {
            return;
        }
        installed = true;
        MenuItem item = new MenuItem("Predict expression (spahgc)");
        PredictCommand command = new PredictCommand(qupath);
        item.setOnAction(event -> command.run());
        qupath.getMenu("Extensions", false).getItems().add(item);
    }

    @Override
    public String getName() {
        return "spahgc";
    }

    @Override
    public String getDescription() {
        return "Predicts spatial gene expression from H&E with spahgc:"
                + " one detection per spot, one measurement per gene.";
    }
}

package org.spahgc;

import java.util.Map;

/**
 * One spot of a prediction as a viewer draws it: a circle in level-0 pixels with one
 * measurement per gene.
 *
 * @param id the spot id ({@code <column>x<row>} of the slide-global grid)
 * @param centreX x of the centre
 * @param centreY y of the centre
 * @param diameter diameter of the spot circle
 * @param inTissue whether the spot lies on tissue
 * @param measurements gene → expression, in the engine's gene order; unmodifiable
 */
public record Detection(String id, double centreX, double centreY, double diameter, boolean inTissue,
        Map<String, Double> measurements) {
    /** The bounding box of the spot circle (the frame of an ellipse ROI). */
    public Region bounds() {
        double radius = diameter / 2;
        return new Region(centreX - radius, centreY - radius, diameter, diameter);
    }
}

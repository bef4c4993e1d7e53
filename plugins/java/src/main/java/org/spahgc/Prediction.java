package org.spahgc;

import java.util.List;

/**
 * Predicted expression for the grid spots of a region; immutable. Spots are indexed
 * {@code 0 ≤ spot < spotCount()}, genes {@code 0 ≤ gene < genes().size()} in the engine's order;
 * values are ln(1 + counts per 10k).
 */
public final class Prediction {
    private final List<String> spotIds;
    private final double[] centres;
    private final boolean[] inTissue;
    private final double spotDiameterPx;
    private final double micronsPerPixel;
    private final List<String> genes;
    private final float[] values;

    Prediction(List<String> spotIds, double[] centres, boolean[] inTissue, double spotDiameterPx,
            double micronsPerPixel, List<String> genes, float[] values) {
        this.spotIds = List.copyOf(spotIds);
        this.centres = centres;
        this.inTissue = inTissue;
        this.spotDiameterPx = spotDiameterPx;
        this.micronsPerPixel = micronsPerPixel;
        this.genes = List.copyOf(genes);
        this.values = values;
    }

    /** The number of spots. */
    public int spotCount() {
        return spotIds.size();
    }

    /** The spot ids ({@code <column>x<row>} of the slide-global grid), in spot order. */
    public List<String> spotIds() {
        return spotIds;
    }

    /** The genes (columns), in the engine's order. */
    public List<String> genes() {
        return genes;
    }

    /** The x of the centre of {@code spot}, in level-0 pixels. */
    public double centreX(int spot) {
        return centres[2 * checkSpot(spot)];
    }

    /** The y of the centre of {@code spot}, in level-0 pixels. */
    public double centreY(int spot) {
        return centres[2 * checkSpot(spot) + 1];
    }

    /** Whether {@code spot} lies on tissue. */
    public boolean inTissue(int spot) {
        return inTissue[checkSpot(spot)];
    }

    /** The spot diameter, in level-0 pixels. */
    public double spotDiameterPx() {
        return spotDiameterPx;
    }

    /** The level-0 resolution the grid was laid at, in µm per pixel. */
    public double micronsPerPixel() {
        return micronsPerPixel;
    }

    /** The expression of gene index {@code gene} at {@code spot}. */
    public float value(int spot, int gene) {
        checkSpot(spot);
        if (gene < 0 || gene >= genes.size()) {
            throw new IndexOutOfBoundsException("gene " + gene + " of " + genes.size());
        }
        return values[spot * genes.size() + gene];
    }

    /** The expression of every gene at {@code spot}, in gene order (a copy). */
    public float[] values(int spot) {
        int from = checkSpot(spot) * genes.size();
        float[] row = new float[genes.size()];
        System.arraycopy(values, from, row, 0, row.length);
        return row;
    }

    private int checkSpot(int spot) {
        if (spot < 0 || spot >= spotIds.size()) {
            throw new IndexOutOfBoundsException("spot " + spot + " of " + spotIds.size());
        }
        return spot;
    }
}

package org.spahgc;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Turns predictions into {@link Detection}s, which viewer plugins (QuPath) draw. */
public final class Detections {
    private Detections() {}

    /** One detection per spot of {@code prediction}, in spot order. */
    public static List<Detection> fromPrediction(Prediction prediction) {
        List<String> genes = prediction.genes();
        List<Detection> detections = new ArrayList<>(prediction.spotCount());
        for (int spot = 0; spot < prediction.spotCount(); spot++) {
            float[] values = prediction.values(spot);
            Map<String, Double> measurements = new LinkedHashMap<>();
            for (int gene = 0; gene < values.length; gene++) {
                measurements.put(genes.get(gene), (double) values[gene]);
            }
            detections.add(new Detection(prediction.spotIds().get(spot), prediction.centreX(spot),
                    prediction.centreY(spot), prediction.spotDiameterPx(), prediction.inTissue(spot),
                    Collections.unmodifiableMap(measurements)));
        }
        return List.copyOf(detections);
    }
}

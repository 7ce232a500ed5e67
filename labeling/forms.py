from django import forms


class SampleFilterForm(forms.Form):
    labeled = forms.ChoiceField(choices=[("", "All"), ("false", "Unlabeled"), ("true", "Labeled")], required=False)
    label = forms.CharField(required=False)

    def labeled_value(self) -> bool | None:
        value = self.cleaned_data.get("labeled") if self.is_valid() else ""
        return {"true": True, "false": False}.get(value)
